"""codl's own CPU conv path against PyTorch's: correctness, then the speed of the built-in
models' convs one by one and of whole models (docs/results/own_kernels.md).

    python scripts/own_cpu_check.py OUT_DIR [--threads N ...] [--models a,b] [--quick]

Each conv and model is timed (codl.bench.run.time_back_to_back, median of 10 blocks) on
three float32 CPU processors in turn: the library with NCHW tensors (PyTorch's default),
the library with channels-last tensors, and own kernels (channels-last). Writes
OUT_DIR/own-cpu-ops.csv (one row per op and thread count) and prints summaries; ratios
are own / the faster library layout, measured in the same run.
"""
from __future__ import annotations

import csv
import math
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from codl import zoo
from codl.bench.run import time_back_to_back
from codl.frontends import from_torch
from codl.ops import own_cpu
from codl.processors import Processor
from codl.profile import model_samples
from codl.runtime import ReferenceRunner
from codl.runtime.reference import to_processor

args = sys.argv[1:]
out = Path(args[0])
out.mkdir(parents=True, exist_ok=True)
threads = [int(args[i + 1]) for i, a in enumerate(args) if a == "--threads"] or [1]
models = args[args.index("--models") + 1].split(",") if "--models" in args else ["resnet50", "mobilenetv2", "yolov2", "vit"]
quick = "--quick" in args
print(f"torch {torch.__version__}, {torch.get_num_threads()} threads by default", flush=True)

# 1. correctness against F.conv2d on a padded copy
torch.manual_seed(0)
cases = [  # (N, C, H, W, OC, k, stride, (top, left, bottom, right), dilation)
    (1, 3, 33, 31, 32, 3, 2, (1, 1, 1, 1), 1), (2, 64, 14, 14, 128, 1, 1, (0, 0, 0, 0), 1),
    (1, 24, 17, 19, 40, 5, 1, (2, 2, 0, 2), 1), (1, 16, 9, 9, 24, 3, 1, (0, 1, 1, 1), 2),
    (1, 13, 7, 7, 21, 7, 1, (3, 3, 3, 3), 1), (1, 256, 7, 7, 1000, 1, 1, (0, 0, 0, 0), 1),
    (1, 32, 200, 180, 64, 3, 1, (1, 1, 1, 1), 1),  # many blocks
]
worst = 0.0
with torch.inference_mode():
    for n, c, h, w, oc, k, s, (pt, pl, pb, pr), d in cases:
        x = torch.randn(n, c, h, w).contiguous(memory_format=torch.channels_last)
        wt = (torch.randn(oc, c, k, k) / math.sqrt(c * k * k)).contiguous(memory_format=torch.channels_last)
        b = torch.randn(oc)
        ref = F.conv2d(F.pad(x, (pl, pr, pt, pb)), wt, b, s, 0, d)
        got = own_cpu.conv2d(x, wt, b, (s, s), (pt, pl, pb, pr), (d, d))
        err = ((got - ref).norm() / ref.norm()).item()
        worst = max(worst, err)
        print(f"conv {n}x{c}x{h}x{w} -> {oc}, k{k} s{s} pads {pt, pl, pb, pr} d{d}: rel err {err:.1e}")
print(f"worst relative error {worst:.1e}", flush=True)
if worst > 1e-4:
    sys.exit("the own CPU conv disagrees with the library")


def timed(graph, proc: Processor, x: torch.Tensor) -> float:
    runner = ReferenceRunner(graph, proc)
    xi = to_processor(x, proc)
    ms, _, _ = time_back_to_back(lambda: runner(xi), proc, 10, 3)
    return sorted(ms)[len(ms) // 2]


def geomean(values: list[float]) -> float:
    return math.exp(sum(map(math.log, values)) / len(values))


# 2. the models' convs one by one and whole models
rows = []
for t in threads:
    procs = {"nchw": Processor.parse("cpu", t), "nhwc": Processor.parse("cpu", t, channels_last=True),
             "own": Processor.parse("cpu", t, own_kernels=True)}
    for name in models:
        module, x = zoo.build(name)
        graph = from_torch(module, x, name=name)
        samples = [s for s in dict.fromkeys(model_samples(graph)) if s.family == "conv" and s.g == 1]
        samples = samples[: 8 if quick else None]
        t0 = time.perf_counter()
        for sample in samples:
            g = sample.graph()
            xs = torch.randn(g.inputs[0].shape)
            times = {label: timed(g, proc, xs) for label, proc in procs.items()}
            rows.append({"threads": t, "model": name, "key": sample.key, "k": sample.k, "s": sample.s,
                         "ic": sample.ic, "oc": sample.oc, "h": sample.h, "w": sample.w, "macs": sample.macs,
                         **{f"{label}_ms": ms for label, ms in times.items()}})
        mine = [r for r in rows if r["model"] == name and r["threads"] == t]
        for kind in sorted({"1x1" if r["k"] == 1 else "kxk" for r in mine}):
            sel = [r for r in mine if ("1x1" if r["k"] == 1 else "kxk") == kind]
            ratio = [r["own_ms"] / min(r["nchw_ms"], r["nhwc_ms"]) for r in sel]
            print(f"threads {t} {name} {kind}: {len(sel)} convs, own/library sum "
                  f"{sum(r['own_ms'] for r in sel) / sum(min(r['nchw_ms'], r['nhwc_ms']) for r in sel):.3f}, "
                  f"geomean {geomean(ratio):.3f}, min {min(ratio):.2f}, max {max(ratio):.2f}", flush=True)
        whole = {label: timed(graph, proc, x) for label, proc in procs.items()}
        print(f"threads {t} {name} whole model: library NCHW {whole['nchw']:.2f} ms, channels-last "
              f"{whole['nhwc']:.2f} ms, own {whole['own']:.2f} ms, own / faster library "
              f"{whole['own'] / min(whole['nchw'], whole['nhwc']):.3f} ({time.perf_counter() - t0:.0f} s)", flush=True)
with open(out / "own-cpu-ops.csv", "w", newline="") as f:
    wr = csv.DictWriter(f, fieldnames=list(rows[0]))
    wr.writeheader()
    wr.writerows(rows)
