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

    @property
    def macs(self) -> int:
        return self.m * self.n * self.k

    def to_json(self) -> dict:
        return asdict(self)


# Candidate output blockings (rows x columns of the GEMM view, and the channels the K loop
# takes at a time where given) a library may pick from. GPU: the thread-block tiles of
# the kernels cuDNN and cuBLASLt ran most for the profiled convs and linears on the H100
# (scripts/kernel_names.py; docs/results/predictor.md), both orientations of the
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

    @property
    def candidates(self) -> tuple[tuple[int, ...], ...]:
        return self.tiles or (GPU_TILES if self.kind == "gpu" else CPU_TILES)

    def to_json(self) -> dict:
        d = {"kind": self.kind, "units": self.units, "tiles": [list(t) for t in self.tiles]}
        return {**d, "own": True} if self.own else d

    @staticmethod
    def from_json(data: dict) -> "HardwareParams":
        return HardwareParams(str(data["kind"]), int(data["units"]), tuple(tuple(int(v) for v in t) for t in data.get("tiles", ())),
                              bool(data.get("own", False)))


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
        share_hw = out_hw = shape[2] * shape[3]
        padded = 0
        if (pt, pl) != (pb, pr):  # as the conv kernel pads unevenly (codl.ops.conv)
            sym = symmetric_padding((pt, pl, pb, pr), (sh, sw))
            if sym is None or not x_rows:  # a padded copy of the input first
                padded = in_elems
            else:  # symmetric padding, the surplus output rows and columns computed and dropped
                (ph, pw), _ = sym
                out_hw = conv_out_size(x_rows, kh, sh, ph, ph, dh) * conv_out_size(x_shape[3], kw, sw, pw, pw, dw)
        return OpConfig("conv", shape[0] * out_hw, shape[1], w[1] * kh * kw, in_elems,
                        shape[0] * shape[1] * out_hw, part_groups, kh, sh, padded, shape[0] * (out_hw - share_hw))
    if node.op in (OpKind.LINEAR, OpKind.MATMUL):
        k = graph.spec(node.inputs[0]).shape[-1]
        m = math.prod(shape[:-1])
        return OpConfig("linear", m, shape[-1], k, m * k, math.prod(shape))
    raise ValueError(f"no latency features for {node.op.value}; featured families: {FAMILIES}")


def default_step(family: str, kind: str) -> int:
    """Channels a kernel's K loop takes at a time when a blocking does not say."""
    return (32 if family == "conv" else 64) if kind == "gpu" else 16


FEATURES = ("tile_macs", "tile_loads", "waves", "act_bytes", "weight_bytes", "extra_elems", "extra_calls", "dispatch")
# codl's own kernels: eight more (see :func:`features`); ops they do not run have these at 0
OWN_FEATURES = FEATURES + ("masked_loads", "sm_macs", "tile_steps", "sm_outs", "first_loads", "split_parts",
                           "n8_macs", "n8_outs")


def feature_names(family: str, hw: HardwareParams) -> tuple[str, ...]:
    if family not in FAMILIES:
        raise ValueError(f"unknown op family {family!r}; featured families: {FAMILIES}")
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
