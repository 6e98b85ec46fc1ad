"""Softmax along one axis, and ReduceMean over axes.

Attributes: Softmax ``axis`` (non-negative); ReduceMean ``axes`` (non-negative, sorted;
empty means all axes) and ``keepdims`` (0/1).
"""

from __future__ import annotations

from typing import Sequence

import torch

from ..ir.graph import DType, Node, OpKind, TensorSpec
from .base import Imported, Kernel, OnnxNodeView, OpFamily, Shape, fail, ints, norm_axis


class Reduce(OpFamily):
    kinds = (OpKind.SOFTMAX, OpKind.REDUCE_MEAN)
    onnx_types = ("Softmax", "ReduceMean")

    def from_onnx(self, view: OnnxNodeView) -> Imported:
        rank = len(view.spec(view.inputs[0]).shape)
        if view.op_type == "Softmax":
            return Imported(OpKind.SOFTMAX, [view.inputs[0]],
                            {"axis": norm_axis(int(view.attrs.get("axis", -1)), rank, view)})
        raw = view.const_input(1, "axes")  # opset 18 moved axes to an input
        axes = ints(raw) if raw is not None else ints(view.attrs.get("axes", []))
        if not axes and int(view.attrs.get("noop_with_empty_axes", 0)):
            raise fail(view, "noop_with_empty_axes=1 is not supported")
        axes = sorted(norm_axis(a, rank, view) for a in axes) or list(range(rank))
        return Imported(OpKind.REDUCE_MEAN, [view.inputs[0]],
                        {"axes": axes, "keepdims": int(view.attrs.get("keepdims", 1))})

    def infer(self, node: Node, ins: Sequence[TensorSpec]) -> list[tuple[Shape, DType]]:
        x = ins[0]
        if node.op is OpKind.SOFTMAX:
            return [(x.shape, x.dtype)]
        axes, keep = node.attrs["axes"], node.attrs["keepdims"]
        shape = tuple(1 if i in axes else d for i, d in enumerate(x.shape) if keep or i not in axes)
        return [(shape, x.dtype)]

    def kernel(self, node: Node) -> Kernel:
        if node.op is OpKind.SOFTMAX:
            axis = node.attrs["axis"]
            return lambda x: torch.softmax(x, axis)
        axes, keep = tuple(node.attrs["axes"]), bool(node.attrs["keepdims"])
        return lambda x: torch.mean(x, dim=axes, keepdim=keep)

    def flops(self, node: Node, ins: Sequence[TensorSpec], outs: Sequence[TensorSpec]) -> int:
        return (5 if node.op is OpKind.SOFTMAX else 1) * ins[0].numel
