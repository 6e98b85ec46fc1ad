"""Features of a CPU (:class:`codl.predict.hardware.CpuParams`): one regime per routine
PyTorch runs for an op (:func:`cpu_path`: MKL's GEMM, GEMV and small-matrix code, its own
im2col or 1x1 conv path, oneDNN), or, with codl's own CPU convs, per kind of their GEMMs;
one row of counts each (:func:`cpu_features`).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from ..ops.own_cpu import block_rows
from .hardware import CpuParams

if TYPE_CHECKING:
    from .features import OpConfig

# the CPU paths: see :func:`cpu_features`
CPU_FEATURES = ("macs", "tail_rows", "tail_macs", "scalar_macs", "odd_rows", "calls", "b_l2", "b_l3", "b_dram",
                "a_l2", "a_l3", "a_dram", "c_l2", "c_l3", "c_dram", "fresh", "copy", "tiles", "dispatch")
# codl's own CPU convs (codl.ops.own_cpu) add their padded copy, the im2col copy's
# contiguous runs and the GEMM calls beyond the first
CPU_OWN_FEATURES = CPU_FEATURES + ("pad", "runs", "blocks")


def feature_names(hw: CpuParams) -> tuple[str, ...]:
    return CPU_OWN_FEATURES if hw.own else CPU_FEATURES


# PyTorch (aten's use_mkldnn) runs a float32 CPU conv on its own im2col+GEMM path, not
# oneDNN, when it is a 1x1 stride-1 conv of a batch under 16 on one thread, or an
# ungrouped conv of one image with kernels of at most 3 on an input of at most this many
# elements
NATIVE_CONV_MAX_ELEMS = 20480
# glibc maps allocations above this (its largest mmap threshold) afresh on every call:
# their pages are faulted in and zeroed each time
MMAP_BYTES = 32 << 20
SMALL_ROWS = 32  # GEMMs of fewer rows take MKL's small-matrix code (odd rows, row pairs)
# linears of 2 or 3 rows follow a cost of their own (a 3 x 1544 x 7032 linear took 7.7 ms
# on the development CPU, 2 rows 5.4 ms, far above the small-matrix model): a regime of
# their own (`cpu_gemm_tiny`)
TINY_ROWS = 4
NARROW_COLUMNS = 16  # codl's own CPU convs of fewer output channels: under one vector of columns


def native_conv(config: OpConfig, hw: CpuParams) -> bool:
    """Whether PyTorch runs this conv on its own im2col+GEMM path (else oneDNN)."""
    if not hw.native_conv or config.batch >= 16:
        return False
    pointwise = config.kernel == 1 and config.stride == 1
    if pointwise and hw.threads == 1:
        return True
    return config.batch == 1 and config.group == 1 and config.kernel <= 3 and config.x_elems <= NATIVE_CONV_MAX_ELEMS


def cpu_path(config: OpConfig, hw: CpuParams) -> str:
    """The routine PyTorch runs for an op on the CPU, as a regime name: linears on
    MKL's GEMV (one row), its code for 2-3 rows, its small-matrix GEMM (under
    ``SMALL_ROWS`` rows) or its GEMM;
    convs on PyTorch's own path (a GEMM on the input as it is for 1x1 stride-1 convs,
    after an im2col copy otherwise; "_small" with under ``SMALL_ROWS`` output channels)
    or on oneDNN (grouped, 1x1, under 16 input channels, direct). With codl's own CPU
    convs (``hw.own``): ``cpu_own_1x1`` or ``cpu_own_i2c`` (:func:`own_cpu_blocks`),
    "_small" where a block's GEMM has under ``SMALL_ROWS`` rows, else "_narrow" under
    ``NARROW_COLUMNS`` output channels."""
    if config.family == "linear":
        if config.m == 1:
            return "cpu_gemv"
        return "cpu_gemm_tiny" if config.m < TINY_ROWS else "cpu_gemm_small" if config.m < SMALL_ROWS else "cpu_gemm"
    if own_cpu_conv(config, hw):
        kind = "cpu_own_1x1" if own_cpu_direct(config) else "cpu_own_i2c"
        rows = own_cpu_blocks(config, hw)[0][0]
        return kind + ("_small" if rows < SMALL_ROWS else "_narrow" if config.n < NARROW_COLUMNS else "")
    if native_conv(config, hw):
        kind = "cpu_gemm1x1" if config.kernel == 1 and config.stride == 1 else "cpu_im2col"
        return kind + ("_small" if config.n < SMALL_ROWS else "")
    if config.group > 1:
        return "cpu_dnn_group"
    if config.kernel == 1:
        return "cpu_dnn1x1"
    return "cpu_dnn_small_ic" if config.k // (config.kernel ** 2) < 16 else "cpu_dnn"


def own_cpu_conv(config: OpConfig, hw: CpuParams) -> bool:
    """Whether ``config`` runs on codl's own CPU conv path (:mod:`codl.ops.own_cpu`)."""
    return hw.own and config.family == "conv" and config.group == 1


def own_cpu_direct(config: OpConfig) -> bool:
    """Whether codl's own CPU conv runs ``config`` as one GEMM on its input (1x1, stride
    1; on the padded copy where it pads) rather than after an im2col copy."""
    return config.kernel == 1 and config.stride == 1


def own_cpu_blocks(config: OpConfig, hw: CpuParams) -> list[tuple[int, int]]:
    """The GEMMs codl's own CPU conv runs per image, as (rows, how many): one of all the
    pixels where it is direct (:func:`own_cpu_direct`), else one per block of
    :func:`codl.ops.own_cpu.block_rows` output rows (rows = the block's pixels), after
    the block's im2col copy."""
    pixels = (config.m - config.surplus) // config.batch  # the share's own: no surplus rows
    if own_cpu_direct(config):
        return [(pixels, 1)]
    cols = max(config.out_cols, 1)
    out_rows = pixels // cols
    rows = block_rows(out_rows, cols, config.k, hw.elem_bytes)
    full, last = divmod(out_rows, rows)
    return [(rows * cols, full)] + ([(last * cols, 1)] if last else [])


def _levels(elems: float, foot: float, hw: CpuParams) -> list[float]:
    """``elems`` (millions) split by the cache level that holds a working set of
    ``foot`` bytes: L2, L3, memory. A level fills from half its size (other data,
    other tenants): the share beyond half of it goes to the next level, all of it at
    its full size."""
    def beyond(cap: int) -> float:
        return min(1.0, max(0.0, (foot - cap / 2) / (cap / 2)))
    b2, b3 = beyond(hw.l2_bytes), beyond(hw.l3_bytes)
    return [elems * (1 - b2), elems * (b2 - b3), elems * b3]


def cpu_features(config: OpConfig, hw: CpuParams) -> list[float]:
    """Features (:data:`CPU_FEATURES`, in millions) of the routine :func:`cpu_path` says
    runs. A GEMM C (m x n) = A (m x k) B (k x n), n being the side the vector registers
    run along (a linear's output features; a conv's output pixels, its output channels
    being m):

        macs        = m * n' * k      (n rounded up to 16 lanes)
        tail_rows   = m * k where n is not a multiple of 16 (the tail's extra pass),
        tail_macs   = m * k * (n mod 16), scalar_macs = m * k * (n mod 4) (lanes the
                      tail computes with narrower vectors, then one at a time)
        odd_rows    = n * k where m is odd (the small-matrix code takes rows in pairs
                      and the last row on its own: one more pass over B)
        calls       = n (one pass per column of B)
        b_*, a_*, c_* = elements of B, A and C, split by the cache level that holds
                      B, and all three, alike (L2, L3, memory; :func:`_levels`)
        fresh       = elements of C in an allocation above MMAP_BYTES (pages faulted
                      in on every call)
        copy        = the im2col copy's elements (k * n)
        tiles       = ceil(m / 6) * ceil(n / 16) register tiles

    oneDNN convs: macs over the taps inside the input only (it skips padding), channels
    rounded up to its 16-channel blocks (input channels as they are under 16; one
    channel a group for grouped convs); calls = output rows x channel blocks x taps (its
    kernel's calls); b_*, a_*, c_* the weights, input and output it reorders to and from
    its blocked layout on every call; copy = the strided input a 1x1 conv of stride 2
    gathers first. ``dispatch`` is the constant.

    codl's own CPU convs (``hw.own``; :data:`CPU_OWN_FEATURES`): the GEMMs of
    :func:`own_cpu_blocks` with a block's pixels as m and the output channels as n (on
    the vector side, as a linear's features), ``copy`` their im2col elements, ``runs``
    its contiguous runs (a kernel row's taps x channels: one per pixel and kernel row),
    ``pad`` the padded copy's elements, ``blocks`` the GEMM calls beyond the first, and
    the operands by cache level for one block (B, the weights, read by every block);
    ``fresh`` stays 0 for every op of such a processor (it keeps freed memory mapped:
    :func:`codl.ops.own_cpu.keep_freed_memory`)."""
    eb = hw.elem_bytes
    f = dict.fromkeys(feature_names(hw), 0.0)
    f["dispatch"] = 1.0
    if own_cpu_conv(config, hw):  # GEMMs: rows = a block's pixels, columns = output channels
        gemms = own_cpu_blocks(config, hw)
        n, k, runs = config.n, config.k, config.kernel  # a tap row's kernel columns x channels lie together
        for rows, count in gemms:
            _gemm_terms(f, rows, n, k, count * config.batch)
        pixels = config.m - config.surplus
        calls = config.batch * sum(count for _, count in gemms)
        f.update(blocks=(calls - 1) / 1e6, pad=config.pad_elems / 1e6)
        if not own_cpu_direct(config):
            f.update(copy=pixels * k / 1e6, runs=pixels * runs / 1e6)
        block = max(rows for rows, _ in gemms)
        a, b, c = pixels * k, calls * n * k, pixels * n
        foots = {"b": n * k * eb, "a": (block * k + n * k + block * n) * eb, "c": (block * k + n * k + block * n) * eb}
    elif config.family == "linear" or native_conv(config, hw):
        if config.family == "linear":
            m, n, k = config.m, config.n, config.k
        else:  # out (channels x pixels) = weights (channels x K) @ columns (K x pixels)
            m, n, k = config.n, config.m // config.batch, config.k
        if config.family == "conv" and not (config.kernel == 1 and config.stride == 1):  # PyTorch's im2col
            f["copy"] = k * n / 1e6
        _gemm_terms(f, m, n, k, 1)
        f["fresh"] = m * n / 1e6 if m * n * eb > MMAP_BYTES else 0.0
        a, b, c = m * k, n * k, m * n
        foots = {"b": b * eb, "a": (a + b + c) * eb, "c": (a + b + c) * eb}  # B streamed; A and C beside it
    else:
        oc, ic, taps = config.n, config.k // config.kernel ** 2, config.kernel ** 2
        if config.group > 1:  # one channel a group (depthwise), else the group's channels
            macs = config.valid_taps * _up(oc, 16) * ic
            calls = config.out_rows * math.ceil(oc / 16) * taps
        else:
            macs = config.valid_taps * _up(oc, 16) * (ic if ic < 16 else _up(ic, 16))
            calls = config.out_rows * math.ceil(oc / 16) * math.ceil(ic / 16) * taps
        if config.group == 1 and config.kernel == 1 and config.stride > 1:  # oneDNN's strided 1x1
            f["copy"] = config.m * ic / 1e6
        a, b, c = config.x_elems, oc * config.k, config.out_elems
        f.update(macs=macs / 1e6, calls=calls / 1e6, fresh=c / 1e6 if c * eb > MMAP_BYTES else 0.0)
        foots = {"b": b * eb, "a": a * eb, "c": c * eb}  # each reorder on its own
    if hw.own:  # a processor with codl's own CPU convs keeps freed memory mapped: no fresh pages
        f["fresh"] = 0.0
    for name, elems in (("b", b), ("a", a), ("c", c)):
        levels = _levels(elems / 1e6, foots[name], hw)
        f.update({f"{name}_l2": levels[0], f"{name}_l3": levels[1], f"{name}_dram": levels[2]})
    return list(f.values())


def _gemm_terms(f: dict[str, float], m: int, n: int, k: int, count: int) -> None:
    """Adds ``count`` GEMMs of m x n x k (n on the vector side) to the CPU features ``f``."""
    f["macs"] += count * m * _up(n, 16) * k / 1e6
    f["tail_rows"] += count * m * k * (n % 16 > 0) / 1e6
    f["tail_macs"] += count * m * k * (n % 16) / 1e6
    f["scalar_macs"] += count * m * k * (n % 4) / 1e6
    f["odd_rows"] += count * n * k * (m % 2) / 1e6
    f["calls"] += count * n / 1e6
    f["tiles"] += count * math.ceil(m / 6) * math.ceil(n / 16) / 1e6


def _up(v: int, step: int) -> int:
    return math.ceil(v / step) * step



# Where an op of a routine without a model of its own goes (too few training samples),
# in order, before the default regime: the nearest routine of the same library
FALLBACKS: dict[str, tuple[str, ...]] = {
    "cpu_gemv": ("cpu_gemm", "cpu_gemm_small", "cpu_gemm_tiny"),
    "cpu_gemm_tiny": ("cpu_gemm_small", "cpu_gemm"),
    "cpu_gemm_small": ("cpu_gemm_tiny", "cpu_gemm"),
    "cpu_gemm": ("cpu_gemm_small", "cpu_gemm_tiny"),
    "cpu_gemm1x1": ("cpu_gemm1x1_small",),
    "cpu_gemm1x1_small": ("cpu_gemm1x1",),
    "cpu_im2col": ("cpu_im2col_small",),
    "cpu_im2col_small": ("cpu_im2col",),
    "cpu_dnn": ("cpu_dnn_small_ic", "cpu_dnn1x1", "cpu_dnn_group"),
    "cpu_dnn_small_ic": ("cpu_dnn", "cpu_dnn1x1", "cpu_dnn_group"),
    "cpu_dnn1x1": ("cpu_dnn", "cpu_dnn_small_ic", "cpu_dnn_group"),
    "cpu_dnn_group": ("cpu_dnn", "cpu_dnn_small_ic", "cpu_dnn1x1"),
    "cpu_own_1x1": ("cpu_own_1x1_small", "cpu_own_1x1_narrow"),
    "cpu_own_1x1_small": ("cpu_own_1x1_narrow", "cpu_own_1x1"),
    "cpu_own_1x1_narrow": ("cpu_own_1x1_small", "cpu_own_1x1"),
    "cpu_own_i2c": ("cpu_own_i2c_small", "cpu_own_i2c_narrow"),
    "cpu_own_i2c_small": ("cpu_own_i2c_narrow", "cpu_own_i2c"),
    "cpu_own_i2c_narrow": ("cpu_own_i2c_small", "cpu_own_i2c"),
}


def fallbacks(name: str, fitted: list[str], default: str) -> list[str]:
    """The regimes an op of routine ``name`` takes the model of, in order, where ``name``
    has none (:data:`FALLBACKS`, then the default regime)."""
    return [*FALLBACKS.get(name, ()), default]
