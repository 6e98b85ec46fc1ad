"""Normalisations: BatchNorm (inference form; folded into a preceding conv on import),
InstanceNorm and LayerNorm.

Attributes: ``epsilon``; LayerNorm also ``axis`` (first normalised axis, non-negative).
Inputs: BatchNorm x, scale, bias, mean, var; InstanceNorm x, scale, bias;
LayerNorm x, scale, optional bias.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F

from ..ir.graph import DType, Node, OpKind, TensorSpec
from ..ir.regions import Box, Dim, default_axis, full_box
from .backend import LIBRARY, Backend
from .base import Imported, Kernel, OnnxNodeView, OpFamily, Shape, fail, norm_axis


class Norm(OpFamily):
    kinds = (OpKind.BATCH_NORM, OpKind.INSTANCE_NORM, OpKind.LAYER_NORM)
    onnx_types = ("BatchNormalization", "InstanceNormalization", "LayerNormalization")

    def from_onnx(self, view: OnnxNodeView) -> Imported:
        eps = float(view.attrs.get("epsilon", 1e-5))
        inputs = [i for i in view.inputs if i]
        if view.op_type == "BatchNormalization":
            if int(view.attrs.get("training_mode", 0)):
                raise fail(view, "training_mode=1 is not supported (inference only)")
            return Imported(OpKind.BATCH_NORM, inputs[:5], {"epsilon": eps})
        if view.op_type == "InstanceNormalization":
            return Imported(OpKind.INSTANCE_NORM, inputs, {"epsilon": eps})
        rank = len(view.spec(inputs[0]).shape)
        axis = norm_axis(int(view.attrs.get("axis", -1)), rank, view)
        return Imported(OpKind.LAYER_NORM, inputs, {"epsilon": eps, "axis": axis})

    def infer(self, node: Node, ins: Sequence[TensorSpec]) -> list[tuple[Shape, DType]]:
        x = ins[0]
        if node.op in (OpKind.BATCH_NORM, OpKind.INSTANCE_NORM):
            if len(x.shape) < 2 or any(p.shape != (x.shape[1],) for p in ins[1:]):
                raise fail(node, f"parameters {[str(p) for p in ins[1:]]} do not match channels of {x}")
            if node.op is OpKind.INSTANCE_NORM and len(x.shape) != 4:
                raise fail(node, f"instance norm supports NCHW input only; got {x}")
        else:
            norm_shape = x.shape[node.attrs["axis"]:]
            if any(p.shape != norm_shape for p in ins[1:]):
                raise fail(node, f"parameters do not match normalised shape {norm_shape}")
        return [(x.shape, x.dtype)]

    def kernel(self, node: Node, backend: Backend = LIBRARY) -> Kernel:
        eps = node.attrs["epsilon"]
        if node.op is OpKind.BATCH_NORM:
            return lambda x, s, b, m, v: F.batch_norm(x, m, v, s, b, False, 0.0, eps)
        if node.op is OpKind.INSTANCE_NORM:
            return lambda x, s, b: F.instance_norm(x, weight=s, bias=b, eps=eps)
        axis = node.attrs["axis"]

        def layer_norm(x: torch.Tensor, s: torch.Tensor, b: torch.Tensor | None = None) -> torch.Tensor:
            return F.layer_norm(x, x.shape[axis:], s, b, eps)
        return layer_norm

    def flops(self, node: Node, ins: Sequence[TensorSpec], outs: Sequence[TensorSpec]) -> int:
        per = 2 if node.op is OpKind.BATCH_NORM else 8  # scale+shift vs. mean, var, normalise
        return per * outs[0].numel

    # BatchNorm: any axis (per-channel parameters follow a channel split); InstanceNorm:
    # channels only (statistics span the rows); LayerNorm: axes before the normalised ones.
    def split_axes(self, node: Node, ins: Sequence[TensorSpec], out: TensorSpec) -> dict[Dim, int]:
        axes = {d: default_axis(len(out.shape), d) for d in Dim}
        if node.op is OpKind.INSTANCE_NORM:
            return {Dim.OC: 1}
        if node.op is OpKind.LAYER_NORM:
            return {d: a for d, a in axes.items() if a is not None and a < node.attrs["axis"]}
        return {d: a for d, a in axes.items() if a is not None}

    def input_boxes(self, node: Node, ins: Sequence[TensorSpec], out: TensorSpec, box: Box) -> list[Box]:
        if node.op is OpKind.LAYER_NORM:
            return [box] + [full_box(p.shape) for p in ins[1:]]
        x_box = box if node.op is OpKind.BATCH_NORM else box[:2] + full_box(out.shape[2:])
        return [x_box] + [(box[1],)] * (len(ins) - 1)
