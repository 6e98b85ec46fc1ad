"""Predictor features: the only place they are defined. Profiling, fitting and prediction
all call :func:`feature_row`, by name, so the three can never disagree.

An :class:`OpConfig` is what a latency depends on (a whole or partial conv or linear seen
as a GEMM, with the activation sizes and window of the call that runs it; built from a
graph node by :func:`config_of`);
``feature_row(config, hw)`` turns it into named, non-negative numbers built the way
CoDL's predictor builds them (seed 003, Table 1): work is cut into blocks spread over the
processor's parallel units, and the stepped response comes from ceilings (waves of tiles
over SMs, GEMM blocks on a core). Each feature's coefficient is the time of one basic
unit, learned by linear regression; a constant feature carries the dispatch time (seed
000). ``regime(config, hw)`` names the kernel or routine that runs, which gets a model
of its own.

One backend per file, chosen by the hardware's type:

- :mod:`.gpu_own`: codl's own GPU kernels (:class:`GpuParams`), one regime per kernel variant;
- :mod:`.cpu`: the routines PyTorch runs on a CPU, and codl's own CPU convs (:class:`CpuParams`).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from ..ir.graph import Graph, Node, OpKind
from ..ir.regions import Box, box_shape, conv_rows
from ..ops.conv import conv_out_size, symmetric_padding
from . import cpu, gpu_own
from .cpu import (
    CPU_FEATURES,
    CPU_OWN_FEATURES,
    cpu_features,
    cpu_path,
    native_conv,
    own_cpu_blocks,
    own_cpu_direct,
)
from .gpu_own import FEATURES as OWN_FEATURES
from .hardware import CpuParams, GpuParams, Hardware

__all__ = ["FAMILIES", "OpConfig", "config_of", "taps_inside", "CPU_FEATURES", "CPU_OWN_FEATURES", "OWN_FEATURES", "cpu_features", "cpu_path", "native_conv",
           "own_cpu_blocks", "own_cpu_direct", "feature_names", "feature_row", "regime", "fallbacks"]


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

    Example: ``OpConfig("linear", m=197, n=3072, k=768, in_elems=197 * 768, out_elems=197 * 3072)``.
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


def config_of(graph: Graph, node: Node, box: Box | None = None) -> OpConfig:
    """The config of ``node`` computing output region ``box`` (whole output if None)."""
    out = graph.spec(node.outputs[0])
    shape = box_shape(box) if box is not None else out.shape
    if node.op is OpKind.CONV:
        return _conv_config(graph, node, box, shape)
    if node.op in (OpKind.LINEAR, OpKind.MATMUL):
        k = graph.spec(node.inputs[0]).shape[-1]
        m = math.prod(shape[:-1])
        return OpConfig("linear", m=m, n=shape[-1], k=k, in_elems=m * k, out_elems=math.prod(shape), x_elems=m * k)
    raise ValueError(f"no latency features for {node.op.value}; featured families: {FAMILIES}")


def _conv_config(graph: Graph, node: Node, box: Box | None, shape: tuple[int, ...]) -> OpConfig:
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
    return OpConfig("conv", m=shape[0] * out_hw, n=shape[1], k=w[1] * kh * kw, in_elems=in_elems,
                    out_elems=shape[0] * shape[1] * out_hw, group=part_groups, kernel=kh, stride=sh, padded=padded,
                    surplus=shape[0] * (out_hw - share_hw), batch=shape[0],
                    x_elems=shape[0] * w[1] * part_groups * x_rows * x_cols, valid_taps=shape[0] * valid,
                    out_rows=oh, out_cols=shape[3], pad_elems=pad_elems)


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


def _check(family: str, hw: Hardware) -> None:
    if family not in FAMILIES:
        raise ValueError(f"unknown op family {family!r}; featured families: {FAMILIES}")
    if not isinstance(hw, (GpuParams, CpuParams)):
        raise TypeError(f"no features for hardware {hw!r}; known: GpuParams, CpuParams")


def feature_names(family: str, hw: Hardware) -> tuple[str, ...]:
    """The names of :func:`feature_row`'s numbers for ``family`` on ``hw``."""
    _check(family, hw)
    return gpu_own.FEATURES if isinstance(hw, GpuParams) else cpu.feature_names(hw)


def regime(config: OpConfig, hw: Hardware) -> str:
    """The kernel variant (GPU) or routine (CPU) that runs ``config`` on ``hw``."""
    _check(config.family, hw)
    return gpu_own.regime(config, hw) if isinstance(hw, GpuParams) else cpu.cpu_path(config, hw)


def feature_row(config: OpConfig, hw: Hardware) -> list[float]:
    """The features (:func:`feature_names`) of ``config`` on ``hw``, in millions of units."""
    _check(config.family, hw)
    return gpu_own.features(config, hw) if isinstance(hw, GpuParams) else cpu.cpu_features(config, hw)


def fallbacks(name: str, fitted: list[str], default: str, hw: Hardware) -> list[str]:
    """The regimes whose models an op of regime ``name`` takes, in order, where ``name``
    has none of its own: the backend's explicit table, the default regime last."""
    return (gpu_own.fallbacks if isinstance(hw, GpuParams) else cpu.fallbacks)(name, fitted, default)
