"""Binary element-wise operators with numpy broadcasting: Add, Sub, Mul, Div, Pow.

Either operand may be a constant (a bias, a scale, an exponent). No attributes.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from ..ir.graph import DType, Node, OpKind, TensorSpec
from .backend import LIBRARY, Backend
from .base import Elementwise, Imported, Kernel, OnnxNodeView, Shape, fail

_FUNCS = {
    OpKind.ADD: torch.add,
    OpKind.SUB: torch.sub,
    OpKind.MUL: torch.mul,
    OpKind.DIV: torch.div,
    OpKind.POW: torch.pow,
}


class Binary(Elementwise):
    kinds = tuple(_FUNCS)
    onnx_types = ("Add", "Sub", "Mul", "Div", "Pow")

    def from_onnx(self, view: OnnxNodeView) -> Imported:
        return Imported(OpKind(view.op_type), list(view.inputs[:2]), {})

    def infer(self, node: Node, ins: Sequence[TensorSpec]) -> list[tuple[Shape, DType]]:
        a, b = ins
        try:
            shape = tuple(np.broadcast_shapes(a.shape, b.shape))
        except ValueError:
            raise fail(node, f"operands {a} and {b} do not broadcast") from None
        dtype = a.dtype if a.dtype.is_float or not b.dtype.is_float else b.dtype
        return [(shape, dtype)]

    def kernel(self, node: Node, backend: Backend = LIBRARY) -> Kernel:
        return _FUNCS[node.op]
