"""Predictor features: the only place they are defined. Profiling, fitting and prediction
all call :func:`features`, by name, so the three can never disagree.

An :class:`OpConfig` is what a latency depends on: the op family, the shapes of the
(possibly partial) op, and its window parameters. ``features(config, hw)`` turns it
into named, non-negative numbers built the way CoDL's predictor builds them (seed 003,
Table 1): work is cut into blocks spread over the processor's parallel units, and the
stepped response comes from ceilings:

    conv as GEMM on a CPU:  ceil(M*N / (block * cores)) * block * K      (multiply-adds per core)
    conv on a GPU:          ceil(tiles / SMs) * tile_m * tile_n * K        (work per wave)

Each feature's coefficient is then the time of one basic unit, learned by linear
regression; a constant feature carries the dispatch time (seed 000).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from ..ir.graph import Graph, Node, OpKind
from ..ir.regions import Box, box_shape

FAMILIES = ("conv", "linear")


@dataclass(frozen=True)
class OpConfig:
    """A conv or linear op, possibly one processor's part of it.

    conv: ``m`` = N*OH*OW output pixels, ``n`` = output channels, ``k`` = IC/group*KH*KW
    (GEMM view), ``in_elems``/``out_elems`` activations, ``group`` count.
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

    @property
    def macs(self) -> int:
        return self.m * self.n * self.k

    def to_json(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class HardwareParams:
    """What the features need to know about a processor: parallel units (CPU threads or
    GPU SMs) and the block/tile sizes the analytic model assumes for it."""

    kind: str  # "cpu" or "gpu"
    units: int
    block: int = 64  # CPU: output elements one core computes per block
    tile_m: int = 128  # GPU: output tile a thread block computes
    tile_n: int = 64


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
        return OpConfig("conv", shape[0] * shape[2] * shape[3], shape[1], w[1] * kh * kw, in_elems,
                        math.prod(shape), part_groups, kh, sh)
    if node.op in (OpKind.LINEAR, OpKind.MATMUL):
        k = graph.spec(node.inputs[0]).shape[-1]
        m = math.prod(shape[:-1])
        return OpConfig("linear", m, shape[-1], k, m * k, math.prod(shape))
    raise ValueError(f"no latency features for {node.op.value}; featured families: {FAMILIES}")


def feature_names(family: str, hw: HardwareParams) -> tuple[str, ...]:
    if family not in FAMILIES:
        raise ValueError(f"unknown op family {family!r}; featured families: {FAMILIES}")
    if hw.kind == "cpu":
        return ("mac_blocks", "out_blocks", "in_per_core", "dispatch")
    return ("mac_waves", "out_waves", "in_bytes", "dispatch")


def features(config: OpConfig, hw: HardwareParams) -> list[float]:
    """Named features (see :func:`feature_names`) of ``config`` on ``hw``."""
    if hw.kind == "cpu":
        blocks = math.ceil(config.m * config.n / (hw.block * hw.units))
        return [float(blocks * hw.block * config.k),  # multiply-adds one core does
                float(math.ceil(config.out_elems / (hw.block * hw.units)) * hw.block),  # writes per core
                float(config.in_elems / hw.units),  # input read / packed per core
                1.0]
    tiles = math.ceil(config.m / hw.tile_m) * math.ceil(config.n / hw.tile_n)
    waves = math.ceil(tiles / hw.units)
    return [float(waves * hw.tile_m * hw.tile_n * config.k),  # work of the busiest SM
            float(waves * hw.tile_m * hw.tile_n),
            float(config.in_elems),  # bytes moved, in elements
            1.0]


RAW_FEATURES = ("log_m", "log_n", "log_k", "log_in", "log_out", "group", "kernel", "stride", "log_macs")


def raw_features(config: OpConfig) -> list[float]:
    """The op's own parameters, log-scaled where they span orders of magnitude: the
    inputs of the random-forest baseline (nn-Meter's approach), named in RAW_FEATURES."""
    return [math.log(max(config.m, 1)), math.log(max(config.n, 1)), math.log(max(config.k, 1)),
            math.log(max(config.in_elems, 1)), math.log(max(config.out_elems, 1)), float(config.group),
            float(config.kernel), float(config.stride), math.log(max(config.macs, 1))]
