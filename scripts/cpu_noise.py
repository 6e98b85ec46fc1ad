"""How stable CPU op timings are across passes for several thread counts and core sets
(a diagnostic for the predictor's noise floor; docs/results/predictor.md).

    python scripts/cpu_noise.py OUT_DIR THREADS[@FIRST_CORE] ...   e.g. 16 15@1 8@8
"""
import sys
from pathlib import Path

from codl.ir import DType
from codl.processors import Processor
from codl.profile import conv_parts, linear_parts, noise_floor, random_samples, run_profile

out = Path(sys.argv[1])
bases = random_samples("conv", 12, seed=7) + random_samples("linear", 12, seed=7)
pairs = [(b, p) for b in bases for p in (conv_parts(b) if b.family == "conv" else linear_parts(b))]
for spec in sys.argv[2:]:
    threads, _, first = spec.partition("@")
    cores = tuple(range(int(first), int(first) + int(threads))) if first else None
    proc = Processor.parse("cpu", int(threads), DType.BFLOAT16, True, cores=cores)
    path = out / f"noise-t{spec.replace('@', 'c')}.csv"
    run_profile(proc, pairs, path, budget_s=300, repeats=5, warmup=2, passes=2, progress=False)
    print(spec, noise_floor(path), flush=True)
