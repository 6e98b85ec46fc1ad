"""Predictor features: the only place they are defined. Profiling, fitting and prediction
all call :func:`features`, by name, so the three can never disagree.

An :class:`OpConfig` is what a latency depends on: the op family, the shapes of the
(possibly partial) op, and its window parameters. ``features(config, hw)`` turns it
into named, non-negative numbers built the way CoDL's predictor builds them (seed 003,
Table 1): work is cut into blocks spread over the processor's parallel units, and the
stepped response comes from ceilings (waves of tiles over SMs, blocks over cores).
Each feature's coefficient is the time of one basic unit, learned by linear regression;
a constant feature carries the dispatch time (seed 000).

Unlike CoDL's own OpenCL kernels, cuDNN, cuBLAS and oneDNN pick among many kernels by
shape, so the features are computed for several candidate blockings and the model
(:class:`codl.predict.AnalyticPredictor`) predicts the fastest candidate, per kernel
regime (:func:`regime`).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from ..ir.graph import Graph, Node, OpKind
from ..ir.regions import Box, box_shape, conv_rows
from ..ops.conv import conv_out_size, symmetric_padding
from ..ops.own_cpu import block_rows
from ..ops.own_kernels import NUM_STAGES, depthwise_tile, gemm_tiling

FAMILIES = ("conv", "linear")


@dataclass(frozen=True)
class OpConfig:
    """A conv or linear op, possibly one processor's part of it.

    conv: ``m`` = N*OH*OW output pixels, ``n`` = output channels, ``k`` = IC/group*KH*KW
    (GEMM view), ``in_elems``/``out_elems`` activations, ``group`` count; ``padded``:
    elements of the padded copy of the input made first when the padding is uneven (a
    row share's slice: libraries pad both sides alike) and cannot be made symmetric,
    else 0. With uneven padding made symmetric, ``m`` and ``out_elems`` count the
    surplus output rows computed and dropped (``surplus`` of them, in output pixels; codl's
    own kernels compute only the share's).
    linear/matmul: ``m`` rows, ``n`` output features, ``k`` inner size, batch folded into m.
    """

    family: str
    m: int
    n: int
    k: int
    in_elems: int
    out_elems: int
    group: int = 1
    kernel: int = 1
    stride: int = 1
    padded: int = 0
    surplus: int = 0
    batch: int = 1
    x_elems: int = 0  # the input tensor as the library gets it (slice, or padded copy)
    valid_taps: int = 0  # kernel taps inside the input, summed over the output pixels the library computes
    out_rows: int = 0  # output rows the library computes (per image)
    out_cols: int = 0  # output columns (per row)
    pad_elems: int = 0  # the input padded on all sides by the op's (share's) own padding; 0 unpadded

    @property
    def macs(self) -> int:
        return self.m * self.n * self.k

    def to_json(self) -> dict:
        return asdict(self)


# Candidate output blockings (rows x columns of the GEMM view, and the channels the K loop
# takes at a time where given) a library may pick from. GPU: the thread-block tiles of
# the kernels cuDNN and cuBLASLt ran most for the profiled convs and linears on the H100
# (a torch.profiler census, docs/results/predictor.md), both orientations of the
# narrow GEMM tiles. CPU: register/cache blocks.
GPU_TILES = ((64, 8, 64), (8, 64, 64), (64, 24, 64), (24, 64, 64), (16, 64, 64), (64, 16, 64), (64, 40, 64),
             (32, 64, 64), (128, 128, 64), (64, 64, 64))
CPU_TILES = ((6, 16), (6, 64), (14, 32), (32, 32), (64, 64), (1, 64))


@dataclass(frozen=True)
class HardwareParams:
    """What the features need to know about a processor: its parallel units (CPU
    threads or GPU SMs) and the candidate blockings its kernels may use, each (rows,
    columns) or (rows, columns, K step) (default: the kind's usual ones)."""

    kind: str  # "cpu" or "gpu"
    units: int
    tiles: tuple[tuple[int, ...], ...] = ()
    own: bool = False  # GPU: convs and linears on codl's own kernels (their tile is known)
    slots: int = 1  # own kernels: programs an SM runs at once (fitted per kernel variant)
    # CPU: model the routine PyTorch runs for each op (:func:`cpu_path`) instead of
    # candidate blockings; with the caches' sizes in bytes (per-core L2, shared L3), the
    # element size, and whether PyTorch's own im2col+GEMM conv path can run (float32)
    cpu_paths: bool = False
    l2_bytes: int = 1 << 20
    l3_bytes: int = 32 << 20
    elem_bytes: int = 4
    native_conv: bool = True

    @property
    def candidates(self) -> tuple[tuple[int, ...], ...]:
        return self.tiles or (GPU_TILES if self.kind == "gpu" else CPU_TILES)

    def to_json(self) -> dict:
        d = {"kind": self.kind, "units": self.units, "tiles": [list(t) for t in self.tiles]}
        if self.cpu_paths:
            d.update(cpu_paths=True, l2_bytes=self.l2_bytes, l3_bytes=self.l3_bytes, elem_bytes=self.elem_bytes,
                     native_conv=self.native_conv)
        return {**d, "own": True} if self.own else d

    @staticmethod
    def from_json(data: dict) -> "HardwareParams":
        cpu = {k: int(data[k]) for k in ("l2_bytes", "l3_bytes", "elem_bytes") if k in data}
        return HardwareParams(str(data["kind"]), int(data["units"]), tuple(tuple(int(v) for v in t) for t in data.get("tiles", ())),
                              bool(data.get("own", False)), cpu_paths=bool(data.get("cpu_paths", False)),
                              native_conv=bool(data.get("native_conv", True)), **cpu)


def config_of(graph: Graph, node: Node, box: Box | None = None) -> OpConfig:
    """The config of ``node`` computing output region ``box`` (whole output if None)."""
    out = graph.spec(node.outputs[0])
    shape = box_shape(box) if box is not None else out.shape
    if node.op is OpKind.CONV:
        w = graph.spec(node.inputs[1]).shape
        kh, kw = node.attrs["kernel"]
        (sh, sw), group = node.attrs["strides"], node.attrs["group"]
        part_groups = max(1, group * shape[1] // w[0])  # groups a channel share covers
        rows, cols = (shape[2] - 1) * sh + kh, (shape[3] - 1) * sw + kw  # input window read
        in_elems = shape[0] * w[1] * part_groups * rows * cols
        pt, pl, pb, pr = node.attrs["pads"]
        (dh, dw), x_shape = node.attrs["dilations"], graph.spec(node.inputs[0]).shape
        x_rows = x_shape[2]
        if box is not None:  # a row share pads its slice: the rows above row 0 and below the last
            lo, hi, pt, pb = conv_rows(*box[2], kh, sh, pt, dh, x_rows)
            x_rows = hi - lo
        pad_elems = shape[0] * w[1] * part_groups * (x_rows + pt + pb) * (x_shape[3] + pl + pr) if any((pt, pl, pb, pr)) else 0
        share_hw = out_hw = shape[2] * shape[3]
        padded = 0
        x_cols, lib_pads = x_shape[3], (pt, pl, pb, pr)  # the library call's input and padding
        if (pt, pl) != (pb, pr):  # as the conv kernel pads unevenly (codl.ops.conv)
            sym = symmetric_padding((pt, pl, pb, pr), (sh, sw))
            if sym is None or not x_rows:  # a padded copy of the input first
                padded = in_elems
                x_rows, x_cols, lib_pads = x_rows + pt + pb, x_cols + pl + pr, (0, 0, 0, 0)
            else:  # symmetric padding, the surplus output rows and columns computed and dropped
                (ph, pw), _ = sym
                lib_pads = (ph, pw, ph, pw)
                out_hw = conv_out_size(x_rows, kh, sh, ph, ph, dh) * conv_out_size(x_shape[3], kw, sw, pw, pw, dw)
        oh = conv_out_size(x_rows, kh, sh, lib_pads[0], lib_pads[2], dh)
        ow = conv_out_size(x_cols, kw, sw, lib_pads[1], lib_pads[3], dw)
        valid = taps_inside(x_rows, kh, sh, lib_pads[0], dh, oh) * taps_inside(x_cols, kw, sw, lib_pads[1], dw, ow)
        return OpConfig("conv", shape[0] * out_hw, shape[1], w[1] * kh * kw, in_elems,
                        shape[0] * shape[1] * out_hw, part_groups, kh, sh, padded, shape[0] * (out_hw - share_hw),
                        shape[0], shape[0] * w[1] * part_groups * x_rows * x_cols, shape[0] * valid, oh, shape[3],
                        pad_elems)
    if node.op in (OpKind.LINEAR, OpKind.MATMUL):
        k = graph.spec(node.inputs[0]).shape[-1]
        m = math.prod(shape[:-1])
        return OpConfig("linear", m, shape[-1], k, m * k, math.prod(shape), x_elems=m * k)
    raise ValueError(f"no latency features for {node.op.value}; featured families: {FAMILIES}")


def taps_inside(size: int, k: int, s: int, p: int, d: int, out: int) -> int:
    """Kernel taps that fall inside an input of ``size`` (not on padding), summed over
    ``out`` outputs of a window (kernel ``k``, stride ``s``, leading padding ``p``,
    dilation ``d``) along one axis."""
    total = 0
    for j in range(k):
        off = j * d - p  # input position of tap j for output 0
        lo, hi = max(0, -(off // s) if off < 0 else 0), min(out - 1, (size - 1 - off) // s)
        total += max(0, hi - lo + 1)
    return total


def default_step(family: str, kind: str) -> int:
    """Channels a kernel's K loop takes at a time when a blocking does not say."""
    return (32 if family == "conv" else 64) if kind == "gpu" else 16


FEATURES = ("tile_macs", "tile_loads", "waves", "act_bytes", "weight_bytes", "extra_elems", "extra_calls", "dispatch")
# codl's own kernels: eight more (see :func:`features`); ops they do not run have these at 0
OWN_FEATURES = FEATURES + ("masked_loads", "sm_macs", "tile_steps", "sm_outs", "first_loads", "split_parts",
                           "n8_macs", "n8_outs")


# the CPU paths (HardwareParams.cpu_paths): see :func:`cpu_features`
CPU_FEATURES = ("macs", "tail_rows", "tail_macs", "scalar_macs", "odd_rows", "calls", "b_l2", "b_l3", "b_dram",
                "a_l2", "a_l3", "a_dram", "c_l2", "c_l3", "c_dram", "fresh", "copy", "tiles", "dispatch")
# codl's own CPU convs (codl.ops.own_cpu) add their padded copy, the im2col copy's
# contiguous runs and the GEMM calls beyond the first
CPU_OWN_FEATURES = CPU_FEATURES + ("pad", "runs", "blocks")


def feature_names(family: str, hw: HardwareParams) -> tuple[str, ...]:
    if family not in FAMILIES:
        raise ValueError(f"unknown op family {family!r}; featured families: {FAMILIES}")
    if hw.cpu_paths:
        return CPU_OWN_FEATURES if hw.own else CPU_FEATURES
    return OWN_FEATURES if hw.own else FEATURES


def depthwise(config: OpConfig) -> bool:
    """A depthwise conv (one input channel and one filter per group)."""
    return config.family == "conv" and config.group > 1 and config.group == config.n and config.k == config.kernel ** 2


def own_kernel(config: OpConfig, hw: HardwareParams) -> bool:
    """Whether ``config`` runs on codl's own kernels on ``hw`` (codl.ops.own_kernels)."""
    return hw.own and (config.family == "linear" or config.group == 1 or depthwise(config))


def regime(config: OpConfig, hw: HardwareParams | None = None) -> str:
    """The kernel family an op runs with, by its shape. Libraries: GEMM for linears; for
    convs 1x1 (a GEMM over pixels), first-layer-like convs with under 8 input channels
    (their own direct kernels), and the rest (implicit GEMM / direct). codl's own
    kernels (``hw.own``): depthwise, and per output tile of the GEMM kernel that runs (its
    cost per unit and the programs an SM holds at once differ; its K steps of 16, 32 or
    64 share a model, the steps being a feature), linears (output features a multiple of
    16 or not apart), 1x1 convs, other convs, and packed-tap convs (few channels; 8
    channels a tap apart, whose gathers load 16 bytes at once) apart."""
    if hw is not None and hw.cpu_paths:
        return cpu_path(config, hw)
    if hw is not None and own_kernel(config, hw):
        if depthwise(config):
            return "own_depthwise"
        taps = config.kernel * config.kernel if config.family == "conv" else 1
        t = gemm_tiling(config.m - config.surplus, config.n, config.k // taps, taps, hw.units)
        if t.packed:  # gathered loads: 16 bytes at a time where a tap's channels are 8, else one element
            kind = "conv_packed8" if config.k // taps == 8 else "conv_packed"
        elif config.family == "linear":  # output features a multiple of 8 but not 16 ran 10-20% slower
            kind = "gemm" if config.n % 16 == 0 else "gemm_n8"
        else:
            kind = "conv1x1" if config.kernel == 1 else "conv"
        return f"own_{kind}_{t.bm}x{t.bn}"
    if config.family == "linear":
        return "gemm"
    if config.kernel == 1:
        return "conv1x1"
    return "conv_small_ic" if config.k // (config.kernel * config.kernel) < 8 else "conv"


def features(config: OpConfig, hw: HardwareParams) -> list[list[float]]:
    """Named features (:func:`feature_names`) of ``config`` for each candidate blocking of
    ``hw``, one row per candidate. For a blocking of tm x tn output elements, the
    tiles are spread over the units in waves, and a wave costs its multiply-adds and
    its operand loads (CoDL's ceil-based counts, seed 003):

        waves      = ceil(ceil(M / tm) * ceil(N / tn) / units)
        tile_macs  = waves * tm * tn * K'         (K' = K rounded up to the kernel's step;
                                                   for convs, each tap's channels rounded up)
        tile_loads = waves * (min(tm, M) + min(tn, N)) * K'
        act_bytes  = activation elements read and written (input, output)
        weight_bytes = weight elements read (and, on a CPU, reordered on every call)
        extra_elems = elements of the padded input copy (uneven padding), extra_calls
                     its two extra kernels (fill, copy): 1 if there is one

    (in millions, to keep the fit well conditioned); ``dispatch`` is the constant.
    On codl's own kernels (:func:`own_kernel`) the blocking is known, one row: the
    tiling :func:`codl.ops.own_kernels.gemm_tiling` chooses, for the share's own output
    pixels (nothing is padded); a K loop split over S programs counts ceil(tiles * S /
    (units * slots)) waves of its parts' K steps (``slots``: programs an SM runs at
    once, fitted per kernel variant), and its partial sums as the extra pass
    (extra_elems = M * N * S, extra_calls = 1). Eight more (:data:`OWN_FEATURES`), where
    P = ceil(tiles * S / units) programs run on the busiest SM and K'' is one program's K:

        masked_loads = tile_loads where a tap's channels are not a multiple of the K
                       step (every load then masked by channel), else 0
        sm_macs    = P * tm * tn * K''   (programs sharing an SM share its throughput:
                                          with waves, a program costs a + b * P)
        tile_steps = waves * K'' / step  (a K step's fixed cost: loop, barrier, addresses)
        sm_outs    = P * tm * tn         (each program's epilogue: its tile written)
        first_loads = waves * (tm + tn) * min(K'', (stages - 1) * step)  (the loads
                                          before the pipeline fills, exposed where K is short)
        split_parts = S where the K loop is split, else 0  (each part's partials
                                          written, and read back by the summing kernel)
        n8_macs, n8_outs = sm_macs, sm_outs where the output channels are not a
                          multiple of 16, else 0 (at 8 SMs such convs ran ~30% slower)

    Depthwise: its pixels x channels tile, K = the taps, and its loads the program's
    input window (the stride spreads it); masked where channels are not a multiple of 8."""
    if hw.cpu_paths:
        return [cpu_features(config, hw)]
    if own_kernel(config, hw):
        return [_own_features(config, hw)]
    if hw.own:  # a library op on a GPU running codl's kernels otherwise (grouped convs)
        return [row + [0.0] * 8 for row in _library_features(config, hw)]
    return _library_features(config, hw)


def _library_features(config: OpConfig, hw: HardwareParams) -> list[list[float]]:
    m, n, k = config.m, config.n, config.k
    taps = config.kernel * config.kernel if config.family == "conv" else 1
    moved = [(config.in_elems + config.out_elems) / 1e6, n * k / 1e6]
    pad = [config.padded / 1e6, float(config.padded > 0)]
    rows = []
    for tile in hw.candidates:
        tm, tn = tile[0], tile[1]
        step = tile[2] if len(tile) > 2 else default_step(config.family, hw.kind)
        kk = taps * math.ceil(k // taps / step) * step  # the K loop runs per filter tap over channel chunks
        waves = math.ceil(math.ceil(m / tm) * math.ceil(n / tn) / hw.units)
        rows.append([waves * tm * tn * kk / 1e6, waves * (min(tm, m) + min(tn, n)) * kk / 1e6, float(waves), *moved,
                     *pad, 1.0])
    return rows


def _own_features(config: OpConfig, hw: HardwareParams) -> list[float]:
    m, n, k = config.m - config.surplus, config.n, config.k
    moved = [(config.in_elems + config.out_elems - config.surplus * n) / 1e6, n * k / 1e6]
    dw = depthwise(config)
    if dw:
        tm, tn = depthwise_tile(n)
        kk = bk = k
        split, even = 1, n % 8 == 0  # channels not a multiple of 8: loaded one at a time
    else:
        taps = config.kernel * config.kernel
        t = gemm_tiling(m, n, k // taps, taps, hw.units)
        tm, tn, split, bk = t.bm, t.bn, t.split, t.bk
        kk = math.ceil(t.steps(k // taps, taps) / split) * t.bk  # K of one program
        even = t.packed or (k // taps) % t.bk == 0  # else every load is masked by channel
    programs = math.ceil(m / tm) * math.ceil(n / tn) * split
    waves = math.ceil(programs / (hw.units * hw.slots))
    per_sm = math.ceil(programs / hw.units)
    extra = [m * n * split / 1e6, 1.0] if split > 1 else [0.0, 0.0]
    if dw:  # a program's input window (its tile's pixels x channels, the stride's spread)
        loads = waves * config.in_elems / programs / 1e6
    else:
        loads = waves * (min(tm, m) + min(tn, n)) * kk / 1e6
    return [waves * tm * tn * kk / 1e6, loads, float(waves), *moved, *extra, 1.0,
            0.0 if even else loads, per_sm * tm * tn * kk / 1e6, waves * kk / bk, per_sm * tm * tn / 1e6,
            waves * (min(tm, m) + min(tn, n)) * min(kk, (NUM_STAGES - 1) * bk) / 1e6, float(split) if split > 1 else 0.0,
            *([0.0, 0.0] if n % 16 == 0 else [per_sm * tm * tn * kk / 1e6, per_sm * tm * tn / 1e6])]


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


def native_conv(config: OpConfig, hw: HardwareParams) -> bool:
    """Whether PyTorch runs this conv on its own im2col+GEMM path (else oneDNN)."""
    if not hw.native_conv or config.batch >= 16:
        return False
    pointwise = config.kernel == 1 and config.stride == 1
    if pointwise and hw.units == 1:
        return True
    return config.batch == 1 and config.group == 1 and config.kernel <= 3 and config.x_elems <= NATIVE_CONV_MAX_ELEMS


def cpu_path(config: OpConfig, hw: HardwareParams) -> str:
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


def own_cpu_conv(config: OpConfig, hw: HardwareParams) -> bool:
    """Whether ``config`` runs on codl's own CPU conv path (:mod:`codl.ops.own_cpu`)."""
    return hw.own and config.family == "conv" and config.group == 1


def own_cpu_direct(config: OpConfig) -> bool:
    """Whether codl's own CPU conv runs ``config`` as one GEMM on its input (1x1, stride
    1; on the padded copy where it pads) rather than after an im2col copy."""
    return config.kernel == 1 and config.stride == 1


def own_cpu_blocks(config: OpConfig, hw: HardwareParams) -> list[tuple[int, int]]:
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


def _levels(elems: float, foot: float, hw: HardwareParams) -> list[float]:
    """``elems`` (millions) split by the cache level that holds a working set of
    ``foot`` bytes: L2, L3, memory. A level fills from half its size (other data,
    other tenants): the share beyond half of it goes to the next level, all of it at
    its full size."""
    def beyond(cap: int) -> float:
        return min(1.0, max(0.0, (foot - cap / 2) / (cap / 2)))
    b2, b3 = beyond(hw.l2_bytes), beyond(hw.l3_bytes)
    return [elems * (1 - b2), elems * (b2 - b3), elems * b3]


def cpu_features(config: OpConfig, hw: HardwareParams) -> list[float]:
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
    path, eb = cpu_path(config, hw), hw.elem_bytes
    f = dict.fromkeys(feature_names(config.family, hw), 0.0)
    f["dispatch"] = 1.0
    if path.startswith("cpu_own"):  # GEMMs: rows = a block's pixels, columns = output channels
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
    elif config.family == "linear" or path.startswith(("cpu_gemm1x1", "cpu_im2col")):
        if config.family == "linear":
            m, n, k = config.m, config.n, config.k
        else:  # out (channels x pixels) = weights (channels x K) @ columns (K x pixels)
            m, n, k = config.n, config.m // config.batch, config.k
        if path.startswith("cpu_im2col"):
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
        if path == "cpu_dnn1x1" and config.stride > 1:
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


RAW_FEATURES = ("log_m", "log_n", "log_k", "log_in", "log_out", "group", "kernel", "stride", "log_macs", "log_padded")


def raw_features(config: OpConfig) -> list[float]:
    """The op's own parameters, log-scaled where they span orders of magnitude: the
    inputs of the random-forest baseline (nn-Meter's approach), named in RAW_FEATURES."""
    return [math.log(max(config.m, 1)), math.log(max(config.n, 1)), math.log(max(config.k, 1)),
            math.log(max(config.in_elems, 1)), math.log(max(config.out_elems, 1)), float(config.group),
            float(config.kernel), float(config.stride), math.log(max(config.macs, 1)), math.log1p(config.padded)]


GATE_FEATURES = ("log_m", "log_n", "log_k", "kernel", "stride")


def gate_features(config: OpConfig) -> list[float]:
    """What the analytic model's kernel gate looks at (named in GATE_FEATURES): the
    GEMM's sizes, log-scaled, and the window, as a library's heuristics do."""
    return [math.log(max(config.m, 1)), math.log(max(config.n, 1)), math.log(max(config.k, 1)),
            float(config.kernel), float(config.stride)]
