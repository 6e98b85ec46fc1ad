"""How codl's GEMM kernel should run convs with few input channels (first layers): every
tile, K step and warp count, taps packed into K steps or not, timed on a set of such convs,
with cuDNN for reference (a development aid; docs/results/own_kernels.md).

    python scripts/own_kernels_packed.py OUT.csv [--quick]
"""
import csv
import itertools
import math
import sys

import torch
import torch.nn.functional as F

from codl.bench.run import time_back_to_back
from codl.ops import own_kernels
from codl.processors import Processor

# (C, H, W, OC, k, stride): zoo first layers, patch embeddings, and perturbed ones
SHAPES = [(3, 224, 224, 64, 7, 2), (3, 224, 224, 32, 3, 2), (3, 416, 416, 32, 3, 1), (3, 224, 224, 768, 16, 16),
          (3, 112, 112, 64, 7, 2), (3, 96, 96, 32, 3, 1), (3, 56, 224, 64, 7, 2), (3, 30, 416, 32, 3, 1),
          (3, 160, 160, 48, 5, 2), (3, 64, 64, 256, 5, 1), (3, 128, 128, 96, 9, 1), (3, 40, 40, 512, 3, 1),
          (4, 128, 128, 64, 3, 1), (4, 64, 64, 128, 5, 1), (4, 200, 200, 32, 7, 2), (4, 32, 32, 1024, 1, 1),
          (4, 96, 96, 2048, 1, 2), (8, 112, 112, 32, 3, 1), (8, 56, 56, 256, 3, 1), (8, 80, 80, 64, 5, 2),
          (8, 160, 160, 16, 3, 2), (8, 64, 64, 512, 1, 1), (3, 14, 14, 96, 1, 1), (3, 9, 9, 512, 5, 2)]
TILES = own_kernels.GEMM_TILES
STEPS = (16, 32, 64)
WARPS = (4, 8)


def main() -> None:
    out, quick = sys.argv[1], "--quick" in sys.argv
    proc = Processor.parse("cuda")
    shapes = SHAPES[:6] if quick else SHAPES
    rule = own_kernels.gemm_tiling
    warps_of = own_kernels.Tiling.warps
    rows = []
    torch.manual_seed(0)
    with torch.inference_mode():
        for c, h, w, oc, k, s in shapes:
            x = torch.randn(1, c, h, w, device="cuda").half().contiguous(memory_format=torch.channels_last)
            wt = torch.randn(oc, c, k, k, device="cuda").half().contiguous(memory_format=torch.channels_last)
            pad = k // 2 if k < 16 else 0
            oh, ow = (h + 2 * pad - k) // s + 1, (w + 2 * pad - k) // s + 1
            ref = F.conv2d(x, wt, None, s, pad)
            lib_ms = float(sorted(time_back_to_back(lambda: F.conv2d(x, wt, None, s, pad), proc, 5, 2)[0])[2])
            chosen = rule(oh * ow, oc, c, k * k, 132)
            for (bm, bn), bk, warps, packed in itertools.product(TILES, STEPS, WARPS, (True, False)):
                tiling = own_kernels.Tiling(bm, bn, bk, 1, packed)
                own_kernels.gemm_tiling = lambda *a, t=tiling: t
                own_kernels.Tiling.warps = property(lambda self, n=warps: n)
                try:
                    fn = lambda: own_kernels.conv2d(x, wt, None, (s, s), (pad, pad), (1, 1), 1, (oh, ow), 132)
                    err = float((fn().float() - ref.float()).abs().max() / ref.float().abs().max().clamp_min(1e-3))
                    ms = float(sorted(time_back_to_back(fn, proc, 5, 2)[0])[2])
                except Exception as e:  # a variant that does not compile (resources) is recorded, not fatal
                    ms, err = math.nan, math.nan
                    print(f"  {bm}x{bn}x{bk} w{warps} packed {packed}: {type(e).__name__}", flush=True)
                finally:
                    own_kernels.gemm_tiling = rule
                    own_kernels.Tiling.warps = warps_of
                steps = tiling.steps(c, k * k)
                rows.append(dict(c=c, h=h, w=w, oc=oc, k=k, s=s, bm=bm, bn=bn, bk=bk, warps=warps, packed=int(packed),
                                 steps=steps, programs=math.ceil(oh * ow / bm) * math.ceil(oc / bn), us=ms * 1e3,
                                 lib_us=lib_ms * 1e3, rel_err=err,
                                 rule=int((bm, bn, bk, packed, warps) == (*chosen[:3], chosen.packed, chosen.warps)
                                          and chosen.split == 1)))
            mine = [r for r in rows if (r["c"], r["h"], r["w"], r["oc"], r["k"], r["s"]) == (c, h, w, oc, k, s)]
            best = min(mine, key=lambda r: r["us"] if r["us"] == r["us"] else math.inf)
            print(f"{(c, h, w, oc, k, s)}: cuDNN {lib_ms * 1e3:.1f} us, rule {chosen.bm}x{chosen.bn}x{chosen.bk} "
                  f"split {chosen.split} packed {int(chosen.packed)}, best {best['bm']}x{best['bn']}x{best['bk']} "
                  f"w{best['warps']} packed {best['packed']} {best['us']:.1f} us", flush=True)
    with open(out, "w", newline="") as f:
        wr = csv.DictWriter(f, fieldnames=list(rows[0]))
        wr.writeheader()
        wr.writerows(rows)


if __name__ == "__main__":
    main()
