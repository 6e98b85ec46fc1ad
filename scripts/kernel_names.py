"""Which kernels the libraries run for each op of a profile (a diagnostic for the
predictor's kernel regimes; docs/results/predictor.md).

    python scripts/kernel_names.py OUT.csv PROFILE.csv [PROFILE.csv ...] [--sm-limit N] [--budget S]

For every sample of the profiles (pass 0), runs the op once under torch.profiler on the
GPU (fp16, channels-last, as the profiles were made) and writes one row per sample:
its key, the names of the device kernels it launched (';'-separated, in launch order)
and each kernel's device time in microseconds. Resumable: keys already in OUT are skipped.
"""
import csv
import sys
import time
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

from codl.ir import DType
from codl.processors import Processor
from codl.profile.measure import load_passes
from codl.runtime import ReferenceRunner
from codl.runtime.reference import to_processor

args = sys.argv[1:]
sm_limit = int(args[args.index("--sm-limit") + 1]) if "--sm-limit" in args else None
budget = float(args[args.index("--budget") + 1]) if "--budget" in args else 1e9
paths = [a for i, a in enumerate(args) if not a.startswith("--") and (i == 0 or not args[i - 1].startswith("--"))]
out, profiles = Path(paths[0]), paths[1:]
proc = Processor.parse("cuda", None, DType.FLOAT16, True, sm_limit)
done = set()
if out.exists():
    with out.open(newline="") as f:
        done = {r["key"] for r in csv.DictReader(f)}
samples = {}
for p in profiles:
    for _, s, _ in load_passes(Path(p)):
        if s.key not in done:
            samples.setdefault(s.key, s)
new = not out.exists()
start = time.perf_counter()
with out.open("a", newline="") as f:
    w = csv.writer(f)
    if new:
        w.writerow(["key", "kernels", "us"])
    for i, (key, s) in enumerate(samples.items()):
        if time.perf_counter() - start > budget:
            break
        graph = s.graph()
        runner = ReferenceRunner(graph, proc)
        x = to_processor(torch.randn(graph.inputs[0].shape), proc)
        for _ in range(2):
            runner(x)
        torch.cuda.synchronize()
        with profile(activities=[ProfilerActivity.CUDA]) as prof:
            runner(x)
            torch.cuda.synchronize()
        kern = [e for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA]
        kern.sort(key=lambda e: e.time_range.start)
        w.writerow([key, ";".join(e.name for e in kern), ";".join(f"{e.time_range.elapsed_us():.2f}" for e in kern)])
        if i % 200 == 0:
            f.flush()
            print(f"{i}/{len(samples)} {time.perf_counter() - start:.0f}s", flush=True)
