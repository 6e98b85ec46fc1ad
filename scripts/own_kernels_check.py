"""codl's own GPU kernels against PyTorch's libraries: correctness, then speed of the
built-in models' convs and linears one by one and of whole models, on the full GPU and
under an SM limit (docs/results/own_kernels.md).

    python scripts/own_kernels_check.py OUT_DIR [--sm-limit N ...] [--models a,b] [--quick]

Times are device times of CUDA-graph replays (codl.bench.run.time_back_to_back), medians
of 10 blocks; each op and model is timed with library kernels and own kernels in turn.
Writes OUT_DIR/own-ops.csv (one row per op and setting) and prints summaries.
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
from codl.ir import DType
from codl.ops import own_kernels
from codl.processors import Processor
from codl.profile import model_samples
from codl.runtime import ReferenceRunner
from codl.runtime.reference import to_processor

args = sys.argv[1:]
out = Path(args[0])
out.mkdir(parents=True, exist_ok=True)
limits = [None] + [int(args[i + 1]) for i, a in enumerate(args) if a == "--sm-limit"]
models = args[args.index("--models") + 1].split(",") if "--models" in args else ["resnet50", "mobilenetv2", "yolov2", "vit"]
quick = "--quick" in args
print(f"torch {torch.__version__}, {torch.cuda.get_device_name()}", flush=True)

# 1. correctness against F.conv2d / F.linear in fp32 on the same half inputs
torch.manual_seed(0)
cases = [  # (N, C, H, W, OC, k, stride, (top, left, bottom, right), dilation, groups)
    (1, 3, 33, 31, 32, 3, 2, (1, 1, 1, 1), 1, 1), (2, 64, 14, 14, 128, 1, 1, (0, 0, 0, 0), 1, 1),
    (1, 24, 17, 19, 40, 5, 1, (2, 2, 0, 2), 1, 1), (1, 16, 9, 9, 24, 3, 1, (0, 1, 1, 1), 2, 1),
    (1, 96, 28, 28, 96, 3, 1, (1, 1, 1, 1), 1, 96), (1, 40, 15, 15, 40, 5, 2, (2, 2, 1, 2), 1, 40),
    (1, 13, 7, 7, 21, 7, 1, (3, 3, 3, 3), 1, 1), (1, 256, 7, 7, 1000, 1, 1, (0, 0, 0, 0), 1, 1),
]
worst = 0.0
with torch.inference_mode():
    for n, c, h, w, oc, k, s, (pt, pl, pb, pr), d, g in cases:
        x = torch.randn(n, c, h, w, device="cuda").half().contiguous(memory_format=torch.channels_last)
        wt = (torch.randn(oc, c // g, k, k, device="cuda") / math.sqrt(c // g * k * k)).half()
        b = torch.randn(oc, device="cuda").half()
        ref = F.conv2d(F.pad(x.float(), (pl, pr, pt, pb)), wt.float(), b.float(), s, 0, d, g)
        got = own_kernels.conv2d(x, wt, b, (s, s), (pt, pl), (d, d), g, tuple(ref.shape[2:]), 132)
        err = ((got.float() - ref).norm() / ref.norm()).item()
        worst = max(worst, err)
        print(f"conv {n}x{c}x{h}x{w} -> {oc}, k{k} s{s} pads {pt, pl, pb, pr} d{d} g{g}: rel err {err:.1e}")
    for m, k_, n_ in ((1, 64, 64), (197, 384, 1152), (37, 100, 24)):
        x = torch.randn(m, k_, device="cuda").half()
        wt = (torch.randn(n_, k_, device="cuda") / math.sqrt(k_)).half()
        b = torch.randn(n_, device="cuda").half()
        ref = F.linear(x.float(), wt.float(), b.float())
        err = ((own_kernels.linear(x, wt, b, 132).float() - ref).norm() / ref.norm()).item()
        worst = max(worst, err)
        print(f"linear {m}x{k_} -> {n_}: rel err {err:.1e}")
print(f"worst relative error {worst:.1e}", flush=True)
if worst > 1e-2:
    sys.exit("own kernels disagree with the library")

# 2. the models' ops one by one and whole models, library vs own kernels
rows = []
for sms in limits:
    lib = Processor.parse("cuda", dtype=DType.FLOAT16, channels_last=True, sm_limit=sms)
    own = Processor.parse("cuda", dtype=DType.FLOAT16, channels_last=True, sm_limit=sms, own_kernels=True)
    for name in models:
        module, x = zoo.build(name)
        graph = from_torch(module, x, name=name)
        samples = list(dict.fromkeys(model_samples(graph)))[: 12 if quick else None]
        t0 = time.perf_counter()
        for sample in samples:
            g = sample.graph()
            xi = to_processor(torch.randn(g.inputs[0].shape), lib)
            times = {}
            for label, proc in (("library", lib), ("own", own)):
                runner = ReferenceRunner(g, proc)
                ms, _, clock = time_back_to_back(lambda: runner(xi), proc, 10, 3)
                times[label] = sorted(ms)[len(ms) // 2]
            rows.append({"sms": sms or "all", "model": name, "family": sample.family, "key": sample.key,
                         "regime": "depthwise" if sample.g > 1 else f"k{sample.k}" if sample.family == "conv" else "linear",
                         "macs": sample.macs, "library_ms": times["library"], "own_ms": times["own"]})
        mine = [r for r in rows if r["model"] == name and r["sms"] == (sms or "all")]
        for regime in sorted({r["regime"] for r in mine}):
            sel = [r for r in mine if r["regime"] == regime]
            ratio = [r["own_ms"] / r["library_ms"] for r in sel]
            print(f"SMs {sms or 'all'} {name} {regime}: {len(sel)} ops, own/library sum "
                  f"{sum(r['own_ms'] for r in sel) / sum(r['library_ms'] for r in sel):.3f}, geomean "
                  f"{math.exp(sum(map(math.log, ratio)) / len(ratio)):.3f}, min {min(ratio):.2f}, max {max(ratio):.2f}",
                  flush=True)
        xs = to_processor(x, lib)
        whole = {}
        for label, proc in (("library", lib), ("own", own)):
            runner = ReferenceRunner(graph, proc)
            ms, _, clock = time_back_to_back(lambda: runner(xs), proc, 10, 3)
            whole[label] = sorted(ms)[len(ms) // 2]
        print(f"SMs {sms or 'all'} {name} whole model ({clock}): library {whole['library']:.3f} ms, own "
              f"{whole['own']:.3f} ms, ratio {whole['own'] / whole['library']:.3f} ({time.perf_counter() - t0:.0f} s)",
              flush=True)
with open(out / "own-ops.csv", "w", newline="") as f:
    wr = csv.DictWriter(f, fieldnames=list(rows[0]))
    wr.writeheader()
    wr.writerows(rows)
