"""Softmax along one axis, and the mean, sum and max reductions over axes.

Attributes: Softmax ``axis`` (non-negative); reductions ``axes`` (non-negative, sorted;
empty means all axes) and ``keepdims`` (0/1).
"""

from __future__ import annotations

from typing import Sequence

import torch

from ..ir.graph import DType, Node, OpKind, TensorSpec
from ..ir.regions import Box, Dim, default_axis
from .backend import LIBRARY, Backend
from .base import Imported, Kernel, OnnxNodeView, OpFamily, Shape, fail, ints, norm_axis

_REDUCTIONS = {
    OpKind.REDUCE_MEAN: lambda x, axes, keep: torch.mean(x, dim=axes, keepdim=keep),
    OpKind.REDUCE_SUM: lambda x, axes, keep: torch.sum(x, dim=axes, keepdim=keep),
    OpKind.REDUCE_MAX: lambda x, axes, keep: torch.amax(x, dim=axes, keepdim=keep),
}


class Reduce(OpFamily):
    kinds = (OpKind.SOFTMAX, *_REDUCTIONS)
    onnx_types = ("Softmax", "ReduceMean", "ReduceSum", "ReduceMax")

    def from_onnx(self, view: OnnxNodeView) -> Imported:
        rank = len(view.spec(view.inputs[0]).shape)
        if view.op_type == "Softmax":
            return Imported(OpKind.SOFTMAX, [view.inputs[0]],
                            {"axis": norm_axis(int(view.attrs.get("axis", -1)), rank, view)})
        raw = view.const_input(1, "axes")  # opset 18 (13 for ReduceSum) moved axes to an input
        axes = ints(raw) if raw is not None else ints(view.attrs.get("axes", []))
        if not axes and int(view.attrs.get("noop_with_empty_axes", 0)):
            raise fail(view, "noop_with_empty_axes=1 is not supported")
        axes = sorted(norm_axis(a, rank, view) for a in axes) or list(range(rank))
        return Imported(OpKind(view.op_type), [view.inputs[0]],
                        {"axes": axes, "keepdims": int(view.attrs.get("keepdims", 1))})

    def infer(self, node: Node, ins: Sequence[TensorSpec]) -> list[tuple[Shape, DType]]:
        x = ins[0]
        if node.op is OpKind.SOFTMAX:
            return [(x.shape, x.dtype)]
        axes, keep = node.attrs["axes"], node.attrs["keepdims"]
        shape = tuple(1 if i in axes else d for i, d in enumerate(x.shape) if keep or i not in axes)
        return [(shape, x.dtype)]

    def kernel(self, node: Node, backend: Backend = LIBRARY) -> Kernel:
        if node.op is OpKind.SOFTMAX:
            axis = node.attrs["axis"]
            return lambda x: torch.softmax(x, axis)
        axes, keep, reduce = tuple(node.attrs["axes"]), bool(node.attrs["keepdims"]), _REDUCTIONS[node.op]
        return lambda x: reduce(x, axes, keep)

    def flops(self, node: Node, ins: Sequence[TensorSpec], outs: Sequence[TensorSpec]) -> int:
        return (5 if node.op is OpKind.SOFTMAX else 1) * ins[0].numel

    # Softmax splits on any default axis but its own; reductions run whole.
    def split_axes(self, node: Node, ins: Sequence[TensorSpec], out: TensorSpec) -> dict[Dim, int]:
        if node.op is not OpKind.SOFTMAX:
            return {}
        axes = {d: default_axis(len(out.shape), d) for d in Dim}
        return {d: a for d, a in axes.items() if a is not None and a != node.attrs["axis"]}

    def input_boxes(self, node: Node, ins: Sequence[TensorSpec], out: TensorSpec, box: Box) -> list[Box]:
        return [box]
