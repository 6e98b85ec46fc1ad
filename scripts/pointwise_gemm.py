"""1x1 convs as GEMMs on a channels-last CPU tensor: whole models with the GEMM path on
and off, alternating, and a grid of single convs (docs/results/baselines.md).

    python scripts/pointwise_gemm.py [THREADS] [MODEL ...]
    python scripts/pointwise_gemm.py --cuda [--sm-limit N]

Runs each model (bf16, channels-last, on the CPU) with codl's reference runner, switching
``codl.ops.conv.GEMM_1X1_MAX_PIXELS`` between its value and 0 (GEMM path off) in
alternating rounds; prints the median ms of each and their ratio. Then times single 1x1
convs (channels = in = out, square images) as F.conv2d and as F.linear over the pixels.
With ``--cuda``, only the single convs, in fp16 channels-last on the GPU (optionally
limited to N SMs, cuBLAS planned for them), device time of CUDA-graph replays: whether
cuBLAS (which honours the SM limit) beats cuDNN's 1x1 convs there.
"""
import sys
import time

import torch
import torch.nn.functional as F

import codl.ops.conv as conv
from codl import zoo
from codl.ir import DType
from codl.processors import Processor
from codl.runtime import ReferenceRunner
from codl.runtime.reference import to_processor

args = sys.argv[1:]
if "--cuda" in args:
    from codl.bench.run import time_back_to_back

    sms = int(args[args.index("--sm-limit") + 1]) if "--sm-limit" in args else None
    gpu = Processor.parse("cuda", dtype=DType.FLOAT16, channels_last=True, sm_limit=sms)
    print(f"torch {torch.__version__}, {torch.cuda.get_device_name()}, SM limit {sms}, fp16 channels-last")
    print("single 1x1 convs: time as GEMM / time as conv (conv us in brackets); rows: channels, columns: image side")
    for c in (32, 64, 128, 256, 512, 1024, 2048):
        row = []
        for s in (7, 14, 28, 56, 112):
            x = torch.randn(1, c, s, s, device="cuda", dtype=torch.float16).contiguous(memory_format=torch.channels_last)
            w = torch.randn(c, c, 1, 1, device="cuda", dtype=torch.float16).contiguous(memory_format=torch.channels_last)
            b = torch.randn(c, device="cuda", dtype=torch.float16)
            pix = x.permute(0, 2, 3, 1).reshape(-1, c)
            with gpu.work_context():
                tc = sorted(time_back_to_back(lambda: F.conv2d(x, w, b), gpu, 5, 3)[0])[2]
                tl = sorted(time_back_to_back(lambda: F.linear(pix, w.reshape(c, c), b), gpu, 5, 3)[0])[2]
            row.append(f"{tl / tc:5.2f} ({tc * 1e3:6.1f})")
        print(f"c={c:5d} " + "  ".join(row))
    sys.exit(0)
threads = int(args[0]) if args else 1
models = args[1:] or ["resnet50", "mobilenetv2"]
proc = Processor.parse("cpu", threads=threads, dtype=DType.BFLOAT16, channels_last=True)
proc.activate()
on = conv.GEMM_1X1_MAX_PIXELS


def median_ms(fn, n):
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return sorted(times)[n // 2]


print(f"torch {torch.__version__}, {threads} thread(s), bf16 channels-last; GEMM path below {on} pixels")
for name in models:
    graph = zoo.graph(name)
    runner = ReferenceRunner(graph, proc)
    x = to_processor(torch.randn(graph.inputs[0].shape), proc)
    with torch.inference_mode():
        res = {on: [], 0: []}
        for limit in (on, 0):
            conv.GEMM_1X1_MAX_PIXELS = limit
            for _ in range(3):
                runner(x)
        for _ in range(5):  # alternating rounds, each the median of 5 runs
            for limit in (on, 0):
                conv.GEMM_1X1_MAX_PIXELS = limit
                res[limit].append(median_ms(lambda: runner(x), 5))
    conv.GEMM_1X1_MAX_PIXELS = on
    a, b = sorted(res[on])[2], sorted(res[0])[2]
    print(f"{name:<12} GEMM path {a:8.2f} ms   conv only {b:8.2f} ms   ratio {a / b:.3f}")

print("single 1x1 convs: time as GEMM / time as conv (conv us in brackets); rows: channels, columns: image side")
for c in (32, 64, 128, 256, 512, 1024):
    row = []
    for s in (7, 14, 28, 56):
        x = torch.randn(1, c, s, s, dtype=torch.bfloat16).contiguous(memory_format=torch.channels_last)
        w, b = torch.randn(c, c, 1, 1, dtype=torch.bfloat16), torch.randn(c, dtype=torch.bfloat16)
        with torch.inference_mode():
            for _ in range(3):
                F.conv2d(x, w, b), F.linear(x.permute(0, 2, 3, 1).reshape(-1, c), w.reshape(c, c), b)
            tc = median_ms(lambda: F.conv2d(x, w, b), 15)
            tl = median_ms(lambda: F.linear(x.permute(0, 2, 3, 1).reshape(-1, c), w.reshape(c, c), b), 15)
        row.append(f"{tl / tc:5.2f} ({tc * 1e3:7.0f})")
    print(f"c={c:5d} " + "  ".join(row))
