"""Features of codl's own GPU kernels (:mod:`codl.ops.own_kernels`): their tiling is a
plain function of the shape and the SMs, so each op gets one row of CoDL's ceil-based
counts (seed 003, Table 1) for the tiling that runs, and a regime per kernel variant.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from ..ops.own_kernels import NUM_STAGES, depthwise_tile, gemm_tiling
from .hardware import GpuParams

if TYPE_CHECKING:
    from .features import OpConfig

FEATURES = ("tile_macs", "tile_loads", "waves", "act_bytes", "weight_bytes", "extra_elems", "extra_calls",
            "dispatch", "masked_loads", "sm_macs", "tile_steps", "sm_outs", "first_loads", "split_parts",
            "n8_macs", "n8_outs")
# grouped convs that are not depthwise are not codl's kernels (cuDNN runs them): one
# coarse row of the same counts for a 64 x 64 tile, K steps of 32 (no kept profile has any)
GROUPED_TILE = (64, 64, 32)


def depthwise(config: OpConfig) -> bool:
    """A depthwise conv (one input channel and one filter per group)."""
    return config.family == "conv" and config.group > 1 and config.group == config.n and config.k == config.kernel ** 2


def regime(config: OpConfig, hw: GpuParams) -> str:
    """The kernel variant an op runs: ``own_depthwise``; ``own_<kind>_<rows>x<cols>``
    per output tile of the GEMM kernel (its K steps of 16, 32 or 64 share a model, the
    steps being a feature), kind one of ``gemm`` (linears), ``gemm_n8`` (output features
    a multiple of 8 but not 16: 10-20% slower), ``conv1x1``, ``conv``, ``conv_packed``
    and ``conv_packed8`` (few channels, taps packed; 8 channels a tap apart load 16
    bytes at once); ``grouped`` for a grouped conv that is not depthwise."""
    if depthwise(config):
        return "own_depthwise"
    if config.family == "conv" and config.group > 1:
        return "grouped"
    taps = config.kernel * config.kernel if config.family == "conv" else 1
    t = gemm_tiling(config.m - config.surplus, config.n, config.k // taps, taps, hw.sms)
    if t.packed:
        kind = "conv_packed8" if config.k // taps == 8 else "conv_packed"
    elif config.family == "linear":
        kind = "gemm" if config.n % 16 == 0 else "gemm_n8"
    else:
        kind = "conv1x1" if config.kernel == 1 else "conv"
    return f"own_{kind}_{t.bm}x{t.bn}"


def variant_kind(name: str) -> str | None:
    """The kind of op of a variant's regime (``own_conv_64x32``: ``own_conv``), None for
    a regime that is no tile variant."""
    head, _, tile = name.rpartition("_")
    return head if name.startswith("own_") and tile.replace("x", "").isdigit() else None


# kinds of op whose variants stand in for each other's when one kind has no model at all
RELATED = {"own_conv_packed8": "own_conv_packed", "own_conv_packed": "own_conv_packed8", "own_gemm_n8": "own_gemm",
           "own_gemm": "own_gemm_n8"}


def fallbacks(name: str, fitted: list[str], default: str) -> list[str]:
    """Where an op of regime ``name`` without a model of its own goes, in order: its
    kind's model pooled over the kind's variants, then a variant of the same kind (the
    same tile rows first, then the nearest rows; the nearest columns; the default regime,
    then the narrower tile breaking ties), then the related kind's (:data:`RELATED`)
    pooled model and variants alike, then the default regime."""
    kind = variant_kind(name)
    if kind is None:
        return [default]
    related = RELATED.get(kind)
    rows, cols = (int(v) for v in name.rpartition("_")[2].split("x"))

    def distance(other: str) -> tuple:
        r, c = (int(v) for v in other.rpartition("_")[2].split("x"))
        return (r != rows, abs(math.log2(r / rows)), abs(math.log2(c / cols)), other != default, r, c)

    same = sorted((n for n in fitted if variant_kind(n) == kind), key=distance)
    near = sorted((n for n in fitted if related and variant_kind(n) == related), key=distance)
    return [kind, *same, *([related] if related else []), *near, default]


def features(config: OpConfig, hw: GpuParams) -> list[float]:
    """One row of :data:`FEATURES` (in millions) for the tiling
    :func:`codl.ops.own_kernels.gemm_tiling` chooses, for the share's own output pixels
    (nothing is padded). For a tile of tm x tn outputs whose K loop is split over S
    programs, with ``slots`` programs an SM runs at once (fitted per variant):

        waves      = ceil(tiles * S / (sms * slots))
        tile_macs  = waves * tm * tn * K''  (K'' = one program's K: its steps x the K step)
        tile_loads = waves * (min(tm, M) + min(tn, N)) * K''
        act_bytes  = activation elements read and written (input, output)
        weight_bytes = weight elements read
        extra_elems, extra_calls = M * N * S and 1 where the K loop is split (the
                     partial sums and the kernel that adds them), else 0
        dispatch   = 1 (the constant, seed 000)

    and, where P = ceil(tiles * S / sms) programs run on the busiest SM:

        masked_loads = tile_loads where a tap's channels are not a multiple of the K
                       step (every load then masked by channel), else 0
        sm_macs    = P * tm * tn * K''   (programs sharing an SM share its throughput)
        tile_steps = waves * K'' / step  (a K step's fixed cost: loop, barrier, addresses)
        sm_outs    = P * tm * tn         (each program's epilogue: its tile written)
        first_loads = waves * (tm + tn) * min(K'', (stages - 1) * step)  (the loads
                                          before the pipeline fills)
        split_parts = S where the K loop is split, else 0
        n8_macs, n8_outs = sm_macs, sm_outs where the output channels are not a
                          multiple of 16, else 0 (slower stores and loads)

    Depthwise: its pixels x channels tile, K = the taps, and its loads the program's
    input window (the stride spreads it); masked where channels are not a multiple of 8."""
    dw = depthwise(config)
    if config.family == "conv" and config.group > 1 and not dw:  # regime "grouped"
        return _grouped(config, hw)
    m, n, k = config.m - config.surplus, config.n, config.k
    moved = [(config.in_elems + config.out_elems - config.surplus * n) / 1e6, n * k / 1e6]
    if dw:
        tm, tn = depthwise_tile(n)
        kk = bk = k
        split, even = 1, n % 8 == 0  # channels not a multiple of 8: loaded one at a time
    else:
        taps = config.kernel * config.kernel
        t = gemm_tiling(m, n, k // taps, taps, hw.sms)
        tm, tn, split, bk = t.bm, t.bn, t.split, t.bk
        kk = math.ceil(t.steps(k // taps, taps) / split) * t.bk  # K of one program
        even = t.packed or (k // taps) % t.bk == 0  # else every load is masked by channel
    programs = math.ceil(m / tm) * math.ceil(n / tn) * split
    waves = math.ceil(programs / (hw.sms * hw.slots))
    per_sm = math.ceil(programs / hw.sms)
    extra = [m * n * split / 1e6, 1.0] if split > 1 else [0.0, 0.0]
    if dw:  # a program's input window (its tile's pixels x channels, the stride's spread)
        loads = waves * config.in_elems / programs / 1e6
    else:
        loads = waves * (min(tm, m) + min(tn, n)) * kk / 1e6
    return [waves * tm * tn * kk / 1e6, loads, float(waves), *moved, *extra, 1.0,
            0.0 if even else loads, per_sm * tm * tn * kk / 1e6, waves * kk / bk, per_sm * tm * tn / 1e6,
            waves * (min(tm, m) + min(tn, n)) * min(kk, (NUM_STAGES - 1) * bk) / 1e6, float(split) if split > 1 else 0.0,
            *([0.0, 0.0] if n % 16 == 0 else [per_sm * tm * tn * kk / 1e6, per_sm * tm * tn / 1e6])]


def _grouped(config: OpConfig, hw: GpuParams) -> list[float]:
    """The first eight counts for one 64 x 64 tile (K rounded per tap to steps of 32),
    the others 0: a coarse row for a kernel codl does not run."""
    m, n, k = config.m, config.n, config.k
    tm, tn, step = GROUPED_TILE
    taps = config.kernel * config.kernel
    kk = taps * math.ceil(k // taps / step) * step
    waves = math.ceil(math.ceil(m / tm) * math.ceil(n / tn) / hw.sms)
    return [waves * tm * tn * kk / 1e6, waves * (min(tm, m) + min(tn, n)) * kk / 1e6, float(waves),
            (config.in_elems + config.out_elems) / 1e6, n * k / 1e6, config.padded / 1e6, float(config.padded > 0),
            1.0] + [0.0] * 8
