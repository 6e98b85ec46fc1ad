"""codl's own GPU kernels for convs and linears (Triton), of a tiling codl chooses.

Why: cuDNN and cuBLAS pick among a hundred kernels by heuristics that the shape alone
does not reveal (docs/results/predictor.md: 116 kernel classes for 2268 convs on the
H100), and they tile for the whole GPU even inside an SM-limited green context. A kernel
whose tile is a known function of the shape and of the SMs it may use makes its latency
a matter of waves and K steps, which is what CoDL's predictor models (CoDL, too, runs
its own kernels). The tile rule, :func:`gemm_tiling`, is plain Python shared by the
kernels and the predictor's features.

- :func:`conv2d`: implicit GEMM over output pixels (rows: N*OH*OW) and output channels
  (columns), the K loop running per filter tap over channel chunks; any stride, padding
  (top and left given, so a row share needs no padded copy), dilation; groups 1. A
  linear is the same kernel on a 1x1 image per row (:func:`linear`).
  Depthwise convs (one input channel and one filter per group) go, in :func:`conv2d`
  too, to a direct kernel over (pixels x channels) tiles.

Both take half or bfloat16 tensors on a CUDA device, channels-last activations
(channels contiguous; others are made so with a copy), compute in fp32 and add the bias
in the same kernel. Where Triton is missing, :func:`available` says why.
"""

from __future__ import annotations

import functools
import math
from typing import Any, NamedTuple

import torch

# (rows, columns) of the output tile a program computes; the K step is chosen apart.
GEMM_TILES = ((128, 128), (128, 64), (64, 128), (64, 64), (64, 32), (32, 64), (32, 32))
# Packed taps (few channels): each A element is gathered on its own, so tiles of 64 rows or
# fewer and K steps of 16 or 32 (on 24 first layers 1.36x faster than the GEMM tiles and
# steps of 64, geometric mean; docs/results/own_kernels.md).
PACKED_TILES = ((64, 128), (64, 64), (32, 64), (32, 32))
STEP_LATENCY = 4096  # per K step of a tile, beyond its outputs, in output-element units
SPLITS = (1, 2, 3, 4, 6, 8, 12, 16)  # ways the K loop may be split over programs
MIN_SPLIT_STEPS = 4  # K steps each part of a split K loop runs at least
REDUCE_COST = 80_000  # the kernel summing split-K partials, in the same units (~3 us)
DEPTHWISE_PIXELS = 64  # output pixels per depthwise program


class Tiling(NamedTuple):
    """How codl's GEMM kernel runs an M x N x K product: output tiles of ``bm`` x ``bn``,
    K steps of ``bk``, the K loop split over ``split`` programs (their fp32 partials
    summed by a second kernel), and ``packed``: the filter taps' channels packed into
    K steps together (few channels per tap) instead of a K loop per tap."""

    bm: int
    bn: int
    bk: int
    split: int
    packed: bool

    def steps(self, k_per_tap: int, taps: int) -> int:
        """K steps of the whole K loop."""
        if self.packed:
            return math.ceil(k_per_tap * taps / self.bk)
        return taps * math.ceil(k_per_tap / self.bk)

    @property
    def warps(self) -> int:
        return 8 if self.bm * self.bn >= 128 * 128 else 4


@functools.lru_cache(maxsize=1 << 16)  # the planner and the predictor ask for the same shapes often
def gemm_tiling(m: int, n: int, k_per_tap: int, taps: int, units: int) -> Tiling:
    """The tiling codl's GEMM kernel runs an M x N output of K = taps x k_per_tap with,
    on ``units`` SMs: of every tile and K split, the one of least estimated cost, a wave
    of programs costing, per K step, its tile's outputs plus ``STEP_LATENCY``, a split
    adding ``REDUCE_COST`` and its partials' elements. Channels of a tap are packed
    across taps when a tap has under 16 (then of ``PACKED_TILES``, K steps of 16 where
    K is at most 32, else 32); else the K step is the largest of 64, 32, 16 not above a
    tap's channels. Ties go to the first (larger) tile, fewer splits."""
    packed = k_per_tap < 16
    if packed:
        bk, tiles_of = (16 if k_per_tap * taps <= 32 else 32), PACKED_TILES
    else:
        bk, tiles_of = (64 if k_per_tap >= 64 else 32 if k_per_tap >= 32 else 16), GEMM_TILES
    best, best_cost = Tiling(*tiles_of[0], bk, 1, packed), math.inf
    for bm, bn in tiles_of:
        tiles = math.ceil(m / bm) * math.ceil(n / bn)
        steps = Tiling(bm, bn, bk, 1, packed).steps(k_per_tap, taps)
        for split in SPLITS:
            part = math.ceil(steps / split)
            if split > 1 and (part < MIN_SPLIT_STEPS or math.ceil(steps / part) < split):
                break
            waves = math.ceil(tiles * split / units)
            cost = waves * part * (bm * bn + STEP_LATENCY)
            if split > 1:
                cost += REDUCE_COST + m * n * split // 8
            if cost < best_cost:
                best, best_cost = Tiling(bm, bn, bk, split, packed), cost
    return best


def depthwise_tile(channels: int) -> tuple[int, int]:
    """(output pixels, channels) of a depthwise program."""
    return DEPTHWISE_PIXELS, 32 if channels <= 32 else 64


def available() -> str | None:
    """None if own kernels can run here, else why not."""
    try:
        import triton  # noqa: F401
    except ImportError:
        return "Triton is not installed (it comes with PyTorch's CUDA builds)"
    if not torch.cuda.is_available():
        return "no CUDA device"
    return None


NUM_STAGES = 3


@functools.lru_cache(maxsize=None)
def _kernels() -> dict[str, Any]:
    import triton
    import triton.language as tl

    # Sizes and geometry are not specialised (each distinct value pattern would compile a
    # kernel); channel counts and strides are (divisibility by 16), for vector loads:
    # leaving them opaque too cost 4-8x (docs/results/own_kernels.md).
    shape_args = ["M", "H", "W", "OH", "OW", "KW", "TAPS", "STEPS", "PART", "SH", "SW", "PH", "PW", "DH", "DW"]

    @triton.jit(do_not_specialize=shape_args)
    def gemm_conv(x_ptr, w_ptr, b_ptr, y_ptr, M, OC, C, H, W, OH, OW, KW, TAPS, STEPS, PART, sxn, sxh, sxw,
                  SH, SW, PH, PW, DH, DW, HAS_BIAS: tl.constexpr, ALIGNED: tl.constexpr, OC_ALIGNED: tl.constexpr,
                  EVEN_C: tl.constexpr, PACKED: tl.constexpr, SPLIT: tl.constexpr, BM: tl.constexpr, BN: tl.constexpr,
                  BK: tl.constexpr):
        # program (tile, part): output tile rows x columns, K steps [part * PART, +PART)
        if ALIGNED:  # channels and strides are multiples of 8: written so, the compiler
            C = C // 8 * 8  # knows it and loads 16 bytes at a time (2x faster where C % 16 != 0)
            sxn = sxn // 8 * 8
            sxh = sxh // 8 * 8
            sxw = sxw // 8 * 8
        if OC_ALIGNED:  # the same for the output channels (whatever the input's)
            OC = OC // 8 * 8
        pid = tl.program_id(0)
        part = tl.program_id(1)
        grid_m = tl.cdiv(M, BM)
        grid_n = tl.cdiv(OC, BN)
        width = 8 * grid_n  # groups of 8 row tiles share their weight columns in L2
        first_m = (pid // width) * 8
        size_m = tl.minimum(grid_m - first_m, 8)
        pid_m = first_m + (pid % width) % size_m
        pid_n = (pid % width) // size_m
        rm = pid_m * BM + tl.arange(0, BM)
        rn = pid_n * BN + tl.arange(0, BN)
        rk = tl.arange(0, BK)
        ohw = OH * OW
        img = rm // ohw
        rest = rm - img * ohw
        oh = rest // OW
        ow = rest - oh * OW
        ih0 = oh * SH - PH
        iw0 = ow * SW - PW
        m_ok = rm < M
        n_ok = rn < OC
        x_img = img.to(tl.int64) * sxn
        w_row = rn.to(tl.int64) * (TAPS * C)
        chunks = tl.cdiv(C, BK)
        acc = tl.zeros((BM, BN), dtype=tl.float32)
        for t in range(part * PART, tl.minimum(part * PART + PART, STEPS)):
            if PACKED:  # a step covers BK (tap, channel) pairs of K = TAPS * C
                kk = t * BK + rk
                tap = kk // C
                c = kk - tap * C
                kh = tap // KW
                ih = ih0[:, None] + (kh * DH)[None, :]
                iw = iw0[:, None] + ((tap - kh * KW) * DW)[None, :]
                k_ok = kk < TAPS * C
                ok = m_ok[:, None] & k_ok[None, :] & (ih >= 0) & (ih < H) & (iw >= 0) & (iw < W)
                a = tl.load(x_ptr + x_img[:, None] + ih.to(tl.int64) * sxh + iw * sxw + c[None, :], mask=ok, other=0.0)
                b = tl.load(w_ptr + w_row[None, :] + kk[:, None], mask=n_ok[None, :] & k_ok[:, None], other=0.0)
            else:  # a step covers BK channels of one tap
                tap = t // chunks
                c = (t - tap * chunks) * BK + rk
                kh = tap // KW
                ih = ih0 + kh * DH
                iw = iw0 + (tap - kh * KW) * DW
                ok = m_ok & (ih >= 0) & (ih < H) & (iw >= 0) & (iw < W)
                a_at = x_ptr + (x_img + ih.to(tl.int64) * sxh + iw * sxw)[:, None] + c[None, :]
                b_at = w_ptr + w_row[None, :] + (tap * C + c)[:, None]
                if EVEN_C:  # whole chunks: no channel mask
                    a = tl.load(a_at, mask=ok[:, None], other=0.0)
                    b = tl.load(b_at, mask=n_ok[None, :], other=0.0)
                else:
                    c_ok = c < C
                    a = tl.load(a_at, mask=ok[:, None] & c_ok[None, :], other=0.0)
                    b = tl.load(b_at, mask=n_ok[None, :] & c_ok[:, None], other=0.0)
            acc = tl.dot(a, b, acc)
        at = rm.to(tl.int64)[:, None] * OC + rn[None, :]
        mask = m_ok[:, None] & n_ok[None, :]
        if SPLIT > 1:  # fp32 partials, summed (with the bias) by split_sum
            tl.store(y_ptr + part.to(tl.int64) * M * OC + at, acc, mask=mask)
        else:
            if HAS_BIAS:
                acc += tl.load(b_ptr + rn, mask=n_ok, other=0.0).to(tl.float32)[None, :]
            tl.store(y_ptr + at, acc.to(y_ptr.dtype.element_ty), mask=mask)

    @triton.jit(do_not_specialize=["MN"])
    def split_sum(p_ptr, b_ptr, y_ptr, MN, OC, SPLIT: tl.constexpr, HAS_BIAS: tl.constexpr, BLOCK: tl.constexpr):
        i = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
        ok = i < MN
        acc = tl.zeros((BLOCK,), dtype=tl.float32)
        for s in range(SPLIT):
            acc += tl.load(p_ptr + s * MN + i, mask=ok, other=0.0)
        if HAS_BIAS:
            acc += tl.load(b_ptr + i % OC, mask=ok, other=0.0).to(tl.float32)
        tl.store(y_ptr + i, acc.to(y_ptr.dtype.element_ty), mask=ok)

    dw_args = ["M", "H", "W", "OH", "OW", "KH", "KW", "SH", "SW", "PH", "PW", "DH", "DW"]

    @triton.jit(do_not_specialize=dw_args)
    def depthwise(x_ptr, w_ptr, b_ptr, y_ptr, M, C, H, W, OH, OW, KH, KW, sxn, sxh, sxw, SH, SW, PH, PW, DH, DW,
                  HAS_BIAS: tl.constexpr, ALIGNED: tl.constexpr, BM: tl.constexpr, BC: tl.constexpr):
        if ALIGNED:
            C = C // 8 * 8
            sxn = sxn // 8 * 8
            sxh = sxh // 8 * 8
            sxw = sxw // 8 * 8
        rm = tl.program_id(0) * BM + tl.arange(0, BM)
        rc = tl.program_id(1) * BC + tl.arange(0, BC)
        ohw = OH * OW
        img = rm // ohw
        rest = rm - img * ohw
        oh = rest // OW
        ow = rest - oh * OW
        m_ok = rm < M
        c_ok = rc < C
        x_img = img.to(tl.int64) * sxn
        acc = tl.zeros((BM, BC), dtype=tl.float32)
        for kh in range(0, KH):
            ih = oh * SH - PH + kh * DH
            for kw in range(0, KW):
                iw = ow * SW - PW + kw * DW
                ok = m_ok & (ih >= 0) & (ih < H) & (iw >= 0) & (iw < W)
                a = tl.load(x_ptr + (x_img + ih.to(tl.int64) * sxh + iw * sxw)[:, None] + rc[None, :],
                            mask=ok[:, None] & c_ok[None, :], other=0.0)
                f = tl.load(w_ptr + rc * (KH * KW) + kh * KW + kw, mask=c_ok, other=0.0)
                acc += a.to(tl.float32) * f.to(tl.float32)[None, :]
        if HAS_BIAS:
            acc += tl.load(b_ptr + rc, mask=c_ok, other=0.0).to(tl.float32)[None, :]
        tl.store(y_ptr + rm.to(tl.int64)[:, None] * C + rc[None, :], acc.to(y_ptr.dtype.element_ty),
                 mask=m_ok[:, None] & c_ok[None, :])

    return {"gemm_conv": gemm_conv, "split_sum": split_sum, "depthwise": depthwise}


def supports(x: torch.Tensor, groups: int, weight: torch.Tensor) -> bool:
    """Whether :func:`conv2d` runs this conv: a CUDA half or bfloat16
    input, and groups 1 or depthwise (one input channel and one filter per group)."""
    if not x.is_cuda or x.dtype not in (torch.float16, torch.bfloat16) or x.dim() != 4:
        return False
    return groups == 1 or (weight.shape[0] == groups == x.shape[1] and weight.shape[1] == 1)


def _nhwc(x: torch.Tensor) -> torch.Tensor:
    return x if x.stride(1) == 1 else x.contiguous(memory_format=torch.channels_last)


def _aligned(*values: int) -> bool:
    return all(v % 8 == 0 for v in values)


def conv2d(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None, stride: tuple[int, int],
           pad: tuple[int, int], dilation: tuple[int, int], groups: int, out_hw: tuple[int, int],
           units: int) -> torch.Tensor:
    """Conv of ``x`` (N, C, H, W) by ``w`` (OC, C, KH, KW), groups 1 or depthwise, into an
    (N, OC, *out_hw) channels-last tensor; ``pad`` = (top, left) padding (the bottom and
    right follow from ``out_hw``)."""
    x = _nhwc(x)
    n, c, h, wd = x.shape
    oc, _, kh, kw = w.shape
    oh, ow = out_hw
    y = torch.empty((n, oc, oh, ow), dtype=x.dtype, device=x.device, memory_format=torch.channels_last)
    m = n * oh * ow
    if not m or not oc:
        return y
    w = w.contiguous(memory_format=torch.channels_last)  # (OC, KH, KW, C) in memory; no copy if already so
    sxn, _, sxh, sxw = x.stride()
    aligned = _aligned(c, sxn, sxh, sxw) and x.data_ptr() % 16 == 0
    bias = b if b is not None else w
    geometry = (stride[0], stride[1], pad[0], pad[1], dilation[0], dilation[1])
    if groups > 1:  # depthwise (supports() admits no other grouping)
        bm, bc = depthwise_tile(c)
        grid = (math.ceil(m / bm), math.ceil(c / bc))
        _kernels()["depthwise"][grid](x, w, bias, y, m, c, h, wd, oh, ow, kh, kw, sxn, sxh, sxw, *geometry,
                                      HAS_BIAS=b is not None, ALIGNED=aligned, BM=bm, BC=bc, num_warps=4)
        return y
    t = gemm_tiling(m, oc, c, kh * kw, units)
    steps = t.steps(c, kh * kw)
    part = math.ceil(steps / t.split)
    tiles = math.ceil(m / t.bm) * math.ceil(oc / t.bn)
    out = y if t.split == 1 else torch.empty((t.split, m, oc), dtype=torch.float32, device=x.device)
    _kernels()["gemm_conv"][(tiles, t.split)](
        x, w, bias, out, m, oc, c, h, wd, oh, ow, kw, kh * kw, steps, part, sxn, sxh, sxw, *geometry,
        HAS_BIAS=b is not None, ALIGNED=aligned, OC_ALIGNED=_aligned(oc), EVEN_C=c % t.bk == 0, PACKED=t.packed,
        SPLIT=t.split,
        BM=t.bm, BN=t.bn, BK=t.bk, num_warps=t.warps, num_stages=NUM_STAGES)
    if t.split > 1:
        _kernels()["split_sum"][(math.ceil(m * oc / 1024),)](
            out, bias, y, m * oc, oc, SPLIT=t.split, HAS_BIAS=b is not None, BLOCK=1024, num_warps=4)
    return y


def linear(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None, units: int) -> torch.Tensor:
    """x @ w.T + b over the last axis of ``x`` (any rank), on codl's GEMM kernel."""
    k = x.shape[-1]
    rows = x.reshape(-1, k)
    if rows.stride(1) != 1:
        rows = rows.contiguous()
    image = rows.as_strided((rows.shape[0], k, 1, 1), (rows.stride(0), 1, k, k))  # one 1x1 NHWC image per row
    y = conv2d(image, w.reshape(w.shape[0], k, 1, 1), b, (1, 1), (0, 0), (1, 1), 1, (1, 1), units)
    return y.reshape(*x.shape[:-1], w.shape[0])

