"""Output channels that are multiples of 8 but not of 16, on codl's GEMM kernel: each shape
at N - 8, N, N + 8 (N a multiple of 16), with the output-channel count written as a
multiple of 8 for the compiler (as the kernel does) and without (a development aid;
docs/results/own_kernels.md).

    python scripts/own_kernels_align.py
"""
import torch

from codl.bench.run import time_back_to_back
from codl.ops import own_kernels
from codl.processors import Processor

proc = Processor.parse("cuda")
# (C, H, W, k, stride, N) convs at batch 1 (C=3: packed taps), then (M, K, N) linears
SHAPES = [(3, 224, 224, 16, 16, 896), (3, 37, 37, 9, 1, 32), (4, 6, 6, 3, 2, 128), (256, 28, 28, 1, 1, 256),
          (128, 56, 56, 3, 1, 128), (2697, 1064, 512), (397, 440, 2464), (16, 4096, 1024)]
aligned = own_kernels._aligned


def timed(fn):
    ms, _, _ = time_back_to_back(fn, proc, 10, 3)
    return sorted(ms)[len(ms) // 2] * 1e3


torch.manual_seed(0)
with torch.inference_mode():
    for shape in SHAPES:
        line = []
        for n in (shape[-1] - 8, shape[-1], shape[-1] + 8):
            if len(shape) == 6:
                c, h, w, k, s, _ = shape
                x = torch.randn(1, c, h, w, device="cuda").half().contiguous(memory_format=torch.channels_last)
                wt = torch.randn(n, c, k, k, device="cuda").half().contiguous(memory_format=torch.channels_last)
                pad = k // 2 if k < 16 else 0
                oh, ow = (h + 2 * pad - k) // s + 1, (w + 2 * pad - k) // s + 1
                fn = lambda: own_kernels.conv2d(x, wt, None, (s, s), (pad, pad), (1, 1), 1, (oh, ow), 132)
            else:
                m, kk, _ = shape
                x, wt = torch.randn(m, kk, device="cuda").half(), torch.randn(n, kk, device="cuda").half()
                fn = lambda: own_kernels.linear(x, wt, None, 132)
            times = []
            for oc_hint in (False, True):
                own_kernels._aligned = lambda *v, hint=oc_hint: aligned(*v) if len(v) > 1 else hint and aligned(*v)
                times.append(timed(fn))
            own_kernels._aligned = aligned
            line.append(f"N={n}: {times[0]:.2f} / {times[1]:.2f} us")
        print(f"{str(shape[:-1]):<28} without / with the N hint: " + ", ".join(line), flush=True)
