"""Unary element-wise operators: activations and math functions.

Attributes: Clip ``min``/``max`` (float or null for unbounded; ReLU6 is Clip 0..6),
LeakyRelu ``alpha``, HardSigmoid ``alpha``/``beta``, Gelu ``approximate`` ("none" or
"tanh"). Output has the input's shape and dtype; cost is one FLOP per element.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F

from ..ir.graph import DType, Node, OpKind, TensorSpec
from .backend import LIBRARY, Backend
from .base import Elementwise, Imported, Kernel, OnnxNodeView, Shape

_SIMPLE = {
    OpKind.RELU: torch.relu,
    OpKind.SIGMOID: torch.sigmoid,
    OpKind.SILU: F.silu,
    OpKind.TANH: torch.tanh,
    OpKind.HARD_SWISH: F.hardswish,
    OpKind.ERF: torch.erf,
    OpKind.SQRT: torch.sqrt,
    OpKind.EXP: torch.exp,
    OpKind.NEG: torch.neg,
    OpKind.ABS: torch.abs,
}


class Unary(Elementwise):
    kinds = tuple(_SIMPLE) + (OpKind.CLIP, OpKind.LEAKY_RELU, OpKind.HARD_SIGMOID, OpKind.GELU)
    onnx_types = ("Relu", "Sigmoid", "Tanh", "HardSwish", "Erf", "Sqrt", "Exp", "Neg", "Abs",
                  "Clip", "LeakyRelu", "HardSigmoid", "Gelu")

    def from_onnx(self, view: OnnxNodeView) -> Imported:
        a, x = view.attrs, [view.inputs[0]]
        if view.op_type == "Clip":
            lo, hi = a.get("min"), a.get("max")  # opset < 11 keeps bounds in attributes
            lo_in, hi_in = view.const_input(1, "min"), view.const_input(2, "max")
            lo = float(lo_in) if lo_in is not None else (None if lo is None else float(lo))
            hi = float(hi_in) if hi_in is not None else (None if hi is None else float(hi))
            return Imported(OpKind.CLIP, x, {"min": lo, "max": hi})
        if view.op_type == "LeakyRelu":
            return Imported(OpKind.LEAKY_RELU, x, {"alpha": float(a.get("alpha", 0.01))})
        if view.op_type == "HardSigmoid":
            return Imported(OpKind.HARD_SIGMOID, x, {"alpha": float(a.get("alpha", 0.2)),
                                                    "beta": float(a.get("beta", 0.5))})
        if view.op_type == "Gelu":
            approx = a.get("approximate", "none")
            return Imported(OpKind.GELU, x, {"approximate": approx.decode() if isinstance(approx, bytes) else approx})
        return Imported(OpKind(view.op_type), x, {})

    def infer(self, node: Node, ins: Sequence[TensorSpec]) -> list[tuple[Shape, DType]]:
        return [(ins[0].shape, ins[0].dtype)]

    def kernel(self, node: Node, backend: Backend = LIBRARY) -> Kernel:
        a = node.attrs
        if node.op in _SIMPLE:
            return _SIMPLE[node.op]
        if node.op is OpKind.CLIP:
            lo, hi = a["min"], a["max"]
            if lo == 0.0 and hi is None:
                return torch.relu
            if lo == 0.0 and hi == 6.0:
                return F.relu6
            return lambda x: torch.clamp(x, lo, hi)
        if node.op is OpKind.LEAKY_RELU:
            alpha = a["alpha"]
            return lambda x: F.leaky_relu(x, alpha)
        if node.op is OpKind.HARD_SIGMOID:
            alpha, beta = a["alpha"], a["beta"]
            if abs(alpha - 1 / 6) < 1e-7 and beta == 0.5:
                return F.hardsigmoid
            return lambda x: torch.clamp(x * alpha + beta, 0.0, 1.0)
        approx = a["approximate"]
        return lambda x: F.gelu(x, approximate=approx)
