"""Linear layers and matrix products.

- ``LINEAR``: y = x @ W.T + b over the last axis of x (any rank); W is a constant
  (out_features, in_features), b an optional constant (out_features,). ONNX Gemm with a
  constant B and MatMul by a constant 2-D matrix import as LINEAR (alpha, beta and
  transposes are folded into the stored weights).
- ``MATMUL``: numpy-style batched matrix product of two tensors (attention's Q.K^T, A.V).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..ir.graph import DType, Node, OpKind, TensorSpec
from ..ir.regions import Box, Dim, full_box, with_axis
from . import own_kernels
from .backend import LIBRARY, Backend
from .base import Imported, Kernel, OnnxNodeView, OpFamily, Shape, broadcast_box, fail
from .fastest import faster_of


class Linear(OpFamily):
    kinds = (OpKind.LINEAR, OpKind.MATMUL)
    onnx_types = ("Gemm", "MatMul")

    def from_onnx(self, view: OnnxNodeView) -> Imported:
        a_name, b_name = view.inputs[0], view.inputs[1]
        b_const = view.const(b_name)
        if view.op_type == "MatMul":
            if b_const is None or b_const.ndim != 2 or view.const(a_name) is not None:
                return Imported(OpKind.MATMUL, [a_name, b_name], {})
            w_name = f"{view.name}.weight"
            return Imported(OpKind.LINEAR, [a_name, w_name], {}, {w_name: np.ascontiguousarray(b_const.T)})
        attrs = view.attrs
        if int(attrs.get("transA", 0)):
            raise fail(view, "Gemm with transA=1 is not supported")
        if b_const is None:
            raise fail(view, "Gemm with a run-time B matrix is not supported (use MatMul)")
        alpha, beta = float(attrs.get("alpha", 1.0)), float(attrs.get("beta", 1.0))
        inputs, new = [a_name], {}
        if int(attrs.get("transB", 0)) and alpha == 1.0:
            inputs.append(b_name)
        else:
            w = b_const if int(attrs.get("transB", 0)) else b_const.T
            inputs.append(f"{view.name}.weight")
            new[inputs[-1]] = np.ascontiguousarray(alpha * w).astype(b_const.dtype)
        c = view.const_input(2, "C")
        if c is not None:
            out_features = new[inputs[1]].shape[0] if new else b_const.shape[0]
            if c.size not in (1, out_features) or (c.ndim == 2 and c.shape[0] != 1):
                raise fail(view, f"Gemm bias of shape {c.shape} is not per-output-feature")
            if beta == 1.0 and c.shape == (out_features,):
                inputs.append(view.inputs[2])
            else:
                inputs.append(f"{view.name}.bias")
                new[inputs[-1]] = (beta * np.broadcast_to(c.reshape(-1), (out_features,))).astype(c.dtype)
        return Imported(OpKind.LINEAR, inputs, {}, new)

    def infer(self, node: Node, ins: Sequence[TensorSpec]) -> list[tuple[Shape, DType]]:
        a, b = ins[0], ins[1]
        if node.op is OpKind.LINEAR:
            if len(b.shape) != 2 or a.shape[-1] != b.shape[1]:
                raise fail(node, f"input {a} does not match weight {b} (out_features, in_features)")
            if len(ins) > 2 and ins[2].shape != (b.shape[0],):
                raise fail(node, f"bias {ins[2]} does not match {b.shape[0]} output features")
            return [(a.shape[:-1] + (b.shape[0],), a.dtype)]
        if len(a.shape) < 2 or len(b.shape) < 2:
            raise fail(node, f"operands {a} and {b}: 1-D matmul is not supported")
        if a.shape[-1] != b.shape[-2]:
            raise fail(node, f"operands {a} and {b} disagree on the inner dimension")
        try:
            batch = tuple(np.broadcast_shapes(a.shape[:-2], b.shape[:-2]))
        except ValueError:
            raise fail(node, f"batch dimensions of {a} and {b} do not broadcast") from None
        return [(batch + (a.shape[-2], b.shape[-1]), a.dtype)]

    def kernel(self, node: Node, backend: Backend = LIBRARY) -> Kernel:
        if node.op is OpKind.MATMUL:
            return torch.matmul
        units = backend.gpu_units
        if units is None:
            return F.linear

        def own_applies(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None = None) -> bool:
            return x.is_cuda and x.dtype in (torch.float16, torch.bfloat16)

        def own_gpu_linear(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None = None) -> torch.Tensor:
            if own_applies(x, w, b):
                return own_kernels.linear(x, w, b, units)
            return F.linear(x, w, b)
        if backend.fastest:
            return faster_of(("linear", units), F.linear, own_gpu_linear, own_applies)
        return own_gpu_linear

    def flops(self, node: Node, ins: Sequence[TensorSpec], outs: Sequence[TensorSpec]) -> int:
        return 2 * outs[0].numel * ins[0].shape[-1]

    # OC: output features (weight rows / columns of B); H: rows (tokens) of the output.
    def split_axes(self, node: Node, ins: Sequence[TensorSpec], out: TensorSpec) -> dict[Dim, int]:
        rank = len(out.shape)
        return {Dim.OC: rank - 1, Dim.H: rank - 2} if rank >= 2 else {}

    def input_boxes(self, node: Node, ins: Sequence[TensorSpec], out: TensorSpec, box: Box) -> list[Box]:
        a, b = ins[0], ins[1]
        rows, cols = box[-2], box[-1]
        if node.op is OpKind.LINEAR:
            x_box = box[:-1] + ((0, a.shape[-1]),)
            return [x_box, with_axis(full_box(b.shape), 0, *cols)] + [(cols,)] * (len(ins) - 2)
        batch = box[:-2]
        a_box = broadcast_box(batch + (rows, (0, a.shape[-1])), a.shape)
        b_box = broadcast_box(batch + ((0, b.shape[-2]), cols), b.shape)
        return [a_box, b_box]

