"""codl's own GEMM/conv kernel on a few shapes against the library, with the tile rule's
choice and with its K split turned off (a development aid; docs/results/own_kernels.md).

    python scripts/own_kernels_variants.py
"""
import torch
import torch.nn.functional as F

from codl.bench.run import time_back_to_back
from codl.ops import own_kernels
from codl.processors import Processor

proc = Processor.parse("cuda")
SHAPES = [  # (C, H, OC, k, stride) convs at batch 1, then (M, K, N) linears
    (512, 13, 1024, 3, 1), (256, 52, 512, 3, 1), (64, 104, 128, 3, 1), (32, 208, 64, 3, 1), (128, 56, 128, 3, 1),
    (256, 14, 1024, 1, 1), (1024, 13, 512, 1, 1), (3, 224, 64, 7, 2), (8, 112, 32, 3, 1),
    (197, 768, 3072), (197, 3072, 768), (197, 768, 2304), (16, 4096, 4096), (4096, 4096, 4096),
]


def timed(fn):
    ms, _, _ = time_back_to_back(fn, proc, 10, 3)
    return sorted(ms)[len(ms) // 2]


torch.manual_seed(0)
rule = own_kernels.gemm_tiling
with torch.inference_mode():
    for shape in SHAPES:
        if len(shape) == 5:
            c, h, oc, k, s = shape
            x = torch.randn(1, c, h, h, device="cuda").half().contiguous(memory_format=torch.channels_last)
            w = torch.randn(oc, c, k, k, device="cuda").half().contiguous(memory_format=torch.channels_last)
            oh = (h + 2 * (k // 2) - k) // s + 1
            flops = 2 * c * oc * k * k * oh * oh
            lib = lambda: F.conv2d(x, w, None, s, k // 2)
            own = lambda: own_kernels.conv2d(x, w, None, (s, s), (k // 2, k // 2), (1, 1), 1, (oh, oh), 132)
            tiling = rule(oh * oh, oc, c, k * k, 132)
        else:
            m, kk, n = shape
            x = torch.randn(m, kk, device="cuda").half()
            w = torch.randn(n, kk, device="cuda").half()
            flops = 2 * m * kk * n
            lib = lambda: F.linear(x, w)
            own = lambda: own_kernels.linear(x, w, None, 132)
            tiling = rule(m, n, kk, 1, 132)
        t_lib, t_own = timed(lib), timed(own)
        own_kernels.gemm_tiling = lambda *a: rule(*a)._replace(split=1)
        t_one = timed(own)
        own_kernels.gemm_tiling = rule
        print(f"{str(shape):<24} {tiling.bm}x{tiling.bn}x{tiling.bk} split {tiling.split} packed {int(tiling.packed)}: "
              f"library {t_lib * 1e3:7.1f} us {flops / t_lib / 1e9:5.0f} TF/s | own {t_own * 1e3:7.1f} us "
              f"{flops / t_own / 1e9:5.0f} TF/s | own unsplit {t_one * 1e3:7.1f} us", flush=True)
