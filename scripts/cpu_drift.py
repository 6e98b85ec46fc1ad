"""Does timing a fixed reference op next to each sample cancel a CPU's speed drift?
(a diagnostic for the predictor's noise floor on shared machines; docs/results/predictor.md)

    python scripts/cpu_drift.py OUT.csv THREADS [PASSES]

Measures the samples of scripts/cpu_noise.py in whole passes; before and after each
sample it times two reference ops (a compute-bound bf16 matmul and a memory-bound copy).
Prints how often two passes agree within +-10% for the raw times and for the times
divided by each reference (the mean of its before and after timings).
"""
import csv
import sys
import time
from pathlib import Path

import numpy as np
import torch

from codl.ir import DType
from codl.processors import Processor
from codl.profile import conv_parts, linear_parts, random_samples
from codl.profile.measure import _measure

out, threads = Path(sys.argv[1]), int(sys.argv[2])
passes = int(sys.argv[3]) if len(sys.argv) > 3 else 2
proc = Processor.parse("cpu", threads, DType.BFLOAT16, True)
torch.set_num_threads(threads)
bases = random_samples("conv", 12, seed=7) + random_samples("linear", 12, seed=7)
samples = list({p.key: p for b in bases for p in (conv_parts(b) if b.family == "conv" else linear_parts(b))}.values())
a = torch.randn(512, 512, dtype=torch.bfloat16)
src, dst = torch.randn(4 << 20), torch.empty(4 << 20)  # 16 MiB each way: past the caches


def ref_ms(fn, reps: int = 5) -> float:
    fn()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times)) * 1e3


refs = {"mm": lambda: torch.mm(a, a), "copy": lambda: dst.copy_(src)}
rows = []
for p in range(passes):
    for s in samples:
        before = {k: ref_ms(f) for k, f in refs.items()}
        t = _measure(s, proc, repeats=5, warmup=2, launch=False)["median_ms"]
        after = {k: ref_ms(f) for k, f in refs.items()}
        rows.append({"pass": p, "key": s.key, "family": s.family, "ms": t,
                     **{f"{k}_ms": (before[k] + after[k]) / 2 for k in refs}})
with out.open("w", newline="") as f:
    w = csv.DictWriter(f, fieldnames=list(rows[0]))
    w.writeheader()
    w.writerows(rows)
by = {}
for r in rows:
    by.setdefault(r["key"], []).append(r)
for family in ("conv", "linear"):
    pairs = [v[:2] for v in by.values() if len(v) >= 2 and v[0]["family"] == family]
    line = [f"{family} ({len(pairs)} samples):"]
    for label, norm in (("raw", lambda r: r["ms"]), ("/mm", lambda r: r["ms"] / r["mm_ms"]),
                        ("/copy", lambda r: r["ms"] / r["copy_ms"])):
        x = np.array([[norm(u), norm(v)] for u, v in pairs])
        rel = np.abs(x[:, 0] - x[:, 1]) / x.mean(axis=1)
        line.append(f"{label} {np.mean(rel <= 0.10):.1%}")
    print(" ".join(line), flush=True)
