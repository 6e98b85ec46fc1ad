"""Does letting the libraries time their kernels change GPU op latency? (a diagnostic for
the predictors and the executor; docs/results/predictor.md)

    python scripts/autotune_check.py OUT.csv PROFILE.csv N SETTING [--sm-limit S] [--seed K]

Takes N random samples (convs and linears) of a stored profile and measures each, on the
GPU in fp16 channels-last as profiled, under one library SETTING for the whole process
(the libraries cache their choice per shape, so settings must not share a process):
``default`` (cuDNN's heuristic choice), ``bench`` (torch.backends.cudnn.benchmark: cuDNN
times its candidate kernels on the first call of each shape and keeps the fastest),
``carve`` (cuBLAS told through PyTorch's SM carveout to plan for the SMs an SM limit
leaves) or ``bench+carve``. One row per sample: the median ms (as the profiler measures
it) and the first call's wall ms (where autotuning happens).
"""
import csv
import random
import sys
import time
from pathlib import Path

import torch

from codl.ir import DType
from codl.processors import Processor
from codl.profile.measure import _measure, load_passes
from codl.runtime import ReferenceRunner
from codl.runtime.reference import to_processor

args = sys.argv[1:]
opt = lambda name, default: type(default)(args[args.index(name) + 1]) if name in args else default  # noqa: E731
sm_limit = opt("--sm-limit", 0) or None
out, profile, n, setting = Path(args[0]), Path(args[1]), int(args[2]), args[3]
proc = Processor.parse("cuda", None, DType.FLOAT16, True, sm_limit)
total = torch.cuda.get_device_properties(0).multi_processor_count
carve = getattr(torch._C, "_set_sm_carveout_experimental", None)
print("torch", torch.__version__, "carveout API:", carve is not None, flush=True)
torch.backends.cudnn.benchmark = "bench" in setting
if "carve" in setting:
    carve(total - sm_limit)
rows = [s for _, s, _ in load_passes(profile) if s.family in ("conv", "linear")]
random.Random(opt("--seed", 0)).shuffle(rows)
start = time.perf_counter()
with out.open("w", newline="") as f:
    w = csv.writer(f)
    w.writerow(["key", "family", "setting", "median_ms", "first_ms"])
    for i, s in enumerate(rows[:n]):
        graph = s.graph()
        runner = ReferenceRunner(graph, proc)
        x = to_processor(torch.randn(graph.inputs[0].shape), proc)
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        with proc.work_context():
            runner(x)
        torch.cuda.synchronize()
        first = (time.perf_counter() - t0) * 1e3
        m = _measure(s, proc, 10, 3, launch=False)
        w.writerow([s.key, s.family, setting, f"{m['median_ms']:.5f}", f"{first:.3f}"])
        if i % 50 == 0:
            print(f"{i}/{n} samples, {time.perf_counter() - start:.0f} s", flush=True)
            f.flush()
