"""Shape and layout operators: Identity (also Dropout at inference), Flatten, Reshape,
Transpose, Squeeze, Unsqueeze.

Attributes: Flatten ``axis``; Reshape ``shape`` (the concrete output shape, resolved at
import from 0 and -1 entries); Transpose ``perm``; Squeeze/Unsqueeze ``axes``
(non-negative). These move no arithmetic: FLOPs are zero.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch

from ..ir.graph import DType, Node, OpKind, TensorSpec
from .backend import LIBRARY, Backend
from .base import Imported, Kernel, OnnxNodeView, OpFamily, Shape, fail, ints, norm_axis


def _raw_axes(view: OnnxNodeView) -> list[int]:
    """Axes from the input (opset 13+) or the attribute (older opsets)."""
    raw = view.const_input(1, "axes")
    return ints(raw) if raw is not None else ints(view.attrs.get("axes", []))


class Layout(OpFamily):
    kinds = (OpKind.IDENTITY, OpKind.FLATTEN, OpKind.RESHAPE, OpKind.TRANSPOSE,
             OpKind.SQUEEZE, OpKind.UNSQUEEZE)
    onnx_types = ("Identity", "Dropout", "Flatten", "Reshape", "Transpose", "Squeeze", "Unsqueeze")

    def from_onnx(self, view: OnnxNodeView) -> Imported:
        x = view.inputs[0]
        shape = view.spec(x).shape
        rank = len(shape)
        t = view.op_type
        if t in ("Identity", "Dropout"):
            return Imported(OpKind.IDENTITY, [x], {})
        if t == "Flatten":
            return Imported(OpKind.FLATTEN, [x], {"axis": norm_axis(int(view.attrs.get("axis", 1)), rank + 1, view)})
        if t == "Transpose":
            perm = ints(view.attrs["perm"]) if "perm" in view.attrs else list(reversed(range(rank)))
            return Imported(OpKind.TRANSPOSE, [x], {"perm": perm})
        if t == "Squeeze":
            axes = sorted(norm_axis(a, rank, view) for a in _raw_axes(view))
            return Imported(OpKind.SQUEEZE, [x], {"axes": axes or [i for i, d in enumerate(shape) if d == 1]})
        if t == "Unsqueeze":
            raw = _raw_axes(view)
            return Imported(OpKind.UNSQUEEZE, [x], {"axes": sorted(norm_axis(a, rank + len(raw), view) for a in raw)})
        target = ints(view.const_input(1, "shape"))
        allow_zero = int(view.attrs.get("allowzero", 0))
        out = [shape[i] if d == 0 and not allow_zero else d for i, d in enumerate(target)]
        if out.count(-1) > 1:
            raise fail(view, f"shape {target} has more than one -1")
        if -1 in out:
            known = int(np.prod([d for d in out if d != -1], dtype=np.int64))
            total = int(np.prod(shape, dtype=np.int64))
            if known == 0 or total % known:
                raise fail(view, f"cannot reshape {list(shape)} to {target}")
            out[out.index(-1)] = total // known
        return Imported(OpKind.RESHAPE, [x], {"shape": out})

    def infer(self, node: Node, ins: Sequence[TensorSpec]) -> list[tuple[Shape, DType]]:
        x, a = ins[0], node.attrs
        shape: tuple[int, ...]
        if node.op is OpKind.IDENTITY:
            shape = x.shape
        elif node.op is OpKind.FLATTEN:
            ax = a["axis"]
            shape = (int(np.prod(x.shape[:ax], dtype=np.int64)), int(np.prod(x.shape[ax:], dtype=np.int64)))
        elif node.op is OpKind.RESHAPE:
            shape = tuple(a["shape"])
            if int(np.prod(shape, dtype=np.int64)) != x.numel:
                raise fail(node, f"cannot reshape {x} to {list(shape)}")
        elif node.op is OpKind.TRANSPOSE:
            if sorted(a["perm"]) != list(range(len(x.shape))):
                raise fail(node, f"perm {a['perm']} is not a permutation of the axes of {x}")
            shape = tuple(x.shape[p] for p in a["perm"])
        elif node.op is OpKind.SQUEEZE:
            if any(x.shape[ax] != 1 for ax in a["axes"]):
                raise fail(node, f"cannot squeeze axes {a['axes']} of {x}")
            shape = tuple(d for i, d in enumerate(x.shape) if i not in a["axes"])
        else:
            out = list(x.shape)
            for ax in a["axes"]:
                out.insert(ax, 1)
            shape = tuple(out)
        return [(shape, x.dtype)]

    def kernel(self, node: Node, backend: Backend = LIBRARY) -> Kernel:
        a = node.attrs
        if node.op is OpKind.IDENTITY:
            return lambda x: x
        if node.op is OpKind.TRANSPOSE:
            perm = tuple(a["perm"])
            return lambda x: x.permute(perm)
        if node.op is OpKind.FLATTEN:
            ax = a["axis"]
            return lambda x: x.reshape(math.prod(x.shape[:ax]), -1)
        if node.op is OpKind.RESHAPE:
            shape = tuple(a["shape"])
            return lambda x: x.reshape(shape)
        if node.op is OpKind.SQUEEZE:
            axes = tuple(a["axes"])
            return lambda x: torch.squeeze(x, axes)
        axes_u = a["axes"]

        def unsqueeze(x: torch.Tensor) -> torch.Tensor:
            for ax in axes_u:
                x = x.unsqueeze(ax)
            return x
        return unsqueeze

    def flops(self, node: Node, ins: Sequence[TensorSpec], outs: Sequence[TensorSpec]) -> int:
        return 0
