"""2-D pooling: MaxPool, AveragePool and GlobalAveragePool on NCHW tensors.

Attributes (windowed kinds): ``kernel`` [kh, kw], ``strides``, ``pads`` [top, left,
bottom, right], ``dilations`` (max pool), ``ceil_mode`` (0/1), and for average pooling
``count_include_pad`` (0/1). Global average pooling keeps dims: (N, C, 1, 1).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Sequence

import torch
import torch.nn.functional as F

from ..ir.graph import DType, Node, OpKind, TensorSpec
from ..ir.regions import Box, Dim, conv_rows, with_axis
from .backend import LIBRARY, Backend
from .base import Imported, Kernel, OnnxNodeView, OpFamily, Shape, fail, ints
from .conv import _window_attrs


def pool_out_size(size: int, k: int, s: int, p0: int, p1: int, d: int, ceil: bool) -> int:
    """Output length of a pooling window along one axis (ONNX/PyTorch rule: with
    ceil_mode, the last window must start inside the input or its left padding)."""
    span = size + p0 + p1 - d * (k - 1) - 1
    out = (-(-span // s) if ceil else span // s) + 1
    if ceil and (out - 1) * s >= size + p0:
        out -= 1
    return out


class Pool(OpFamily):
    kinds = (OpKind.MAX_POOL, OpKind.AVG_POOL, OpKind.GLOBAL_AVG_POOL)
    onnx_types = ("MaxPool", "AveragePool", "GlobalAveragePool")

    def from_onnx(self, view: OnnxNodeView) -> Imported:
        x = view.inputs[0]
        if len(view.spec(x).shape) != 4:
            raise fail(view, f"only 2-D pooling on NCHW tensors is supported; input is {view.spec(x)}")
        if view.op_type == "GlobalAveragePool":
            return Imported(OpKind.GLOBAL_AVG_POOL, [x], {})
        attrs = _window_attrs(view, ints(view.attrs["kernel_shape"]))
        attrs["ceil_mode"] = int(view.attrs.get("ceil_mode", 0))
        if view.op_type == "MaxPool":
            if int(view.attrs.get("storage_order", 0)):
                raise fail(view, "storage_order=1 is not supported")
            return Imported(OpKind.MAX_POOL, [x], attrs)
        if attrs["dilations"] != [1, 1]:
            raise fail(view, "dilated average pooling is not supported")
        attrs["count_include_pad"] = int(view.attrs.get("count_include_pad", 0))
        pt, pl, pb, pr = attrs["pads"]
        if (pt != pb or pl != pr) and not attrs["count_include_pad"]:
            raise fail(view, "asymmetric padding with count_include_pad=0 is not supported")
        return Imported(OpKind.AVG_POOL, [x], attrs)

    def infer(self, node: Node, ins: Sequence[TensorSpec]) -> list[tuple[Shape, DType]]:
        x = ins[0]
        if len(x.shape) != 4:
            raise fail(node, f"input must be NCHW; got {x}")
        n, c, h, w = x.shape
        if node.op is OpKind.GLOBAL_AVG_POOL:
            return [((n, c, 1, 1), x.dtype)]
        a = node.attrs
        (kh, kw), (sh, sw), (pt, pl, pb, pr) = a["kernel"], a["strides"], a["pads"]
        dh, dw = a.get("dilations", [1, 1])
        ceil = bool(a["ceil_mode"])
        ho, wo = pool_out_size(h, kh, sh, pt, pb, dh, ceil), pool_out_size(w, kw, sw, pl, pr, dw, ceil)
        if ho <= 0 or wo <= 0:
            raise fail(node, f"output would be empty for input {x}")
        return [((n, c, ho, wo), x.dtype)]

    def kernel(self, node: Node, backend: Backend = LIBRARY) -> Kernel:
        if node.op is OpKind.GLOBAL_AVG_POOL:
            return lambda x: torch.mean(x, dim=(2, 3), keepdim=True)
        a = node.attrs
        k, s, ceil = tuple(a["kernel"]), tuple(a["strides"]), bool(a["ceil_mode"])
        pt, pl, pb, pr = a["pads"]
        symmetric = pt == pb and pl == pr and 2 * pt <= k[0] and 2 * pl <= k[1]
        pad = (pt, pl) if symmetric else (0, 0)
        extra = None if symmetric else (pl, pr, pt, pb)
        if node.op is OpKind.MAX_POOL:
            dil = tuple(a["dilations"])

            def max_pool(x: torch.Tensor) -> torch.Tensor:
                if extra is not None:
                    x = F.pad(x, extra, value=float("-inf"))
                return F.max_pool2d(x, k, s, pad, dil, ceil)
            return max_pool
        include = bool(a["count_include_pad"])

        def avg_pool(x: torch.Tensor) -> torch.Tensor:
            if extra is not None:
                x = F.pad(x, extra)
            return F.avg_pool2d(x, k, s, pad, ceil, include)
        return avg_pool

    def flops(self, node: Node, ins: Sequence[TensorSpec], outs: Sequence[TensorSpec]) -> int:
        if node.op is OpKind.GLOBAL_AVG_POOL:
            return ins[0].numel
        kh, kw = node.attrs["kernel"]
        return outs[0].numel * kh * kw

    # Channels always split; rows split for max pooling (padding with -inf) and for
    # average pooling without padding or ceil mode (else border divisors would change).
    def split_axes(self, node: Node, ins: Sequence[TensorSpec], out: TensorSpec) -> dict[Dim, int]:
        if node.op is OpKind.MAX_POOL or (node.op is OpKind.AVG_POOL and not any(node.attrs["pads"])
                                          and not node.attrs["ceil_mode"]):
            return {Dim.OC: 1, Dim.H: 2}
        return {Dim.OC: 1}

    def input_boxes(self, node: Node, ins: Sequence[TensorSpec], out: TensorSpec, box: Box) -> list[Box]:
        x = ins[0]
        if node.op is OpKind.GLOBAL_AVG_POOL:
            return [box[:2] + ((0, x.shape[2]), (0, x.shape[3]))]
        a = node.attrs
        lo, hi, _, _ = conv_rows(*box[2], a["kernel"][0], a["strides"][0], a["pads"][0], a.get("dilations", [1, 1])[0], x.shape[2])
        return [with_axis(box[:2] + ((0, x.shape[2]), (0, x.shape[3])), 2, lo, hi)]

    def partial_kernel(self, node: Node, ins: Sequence[TensorSpec], out: TensorSpec, box: Box,
                       backend: Backend = LIBRARY) -> Kernel:
        if node.op is OpKind.GLOBAL_AVG_POOL or box[2] == (0, out.shape[2]):
            return self.kernel(node, backend)
        a = node.attrs
        (kh, kw), (sh, sw), dil = a["kernel"], a["strides"], a.get("dilations", [1, 1])
        _, _, top, bottom = conv_rows(*box[2], kh, sh, a["pads"][0], dil[0], ins[0].shape[2])
        # Explicit pads reproduce ceil mode too, so the partial op runs without it.
        _, _, left, right = conv_rows(0, out.shape[3], kw, sw, a["pads"][1], dil[1], ins[0].shape[3])
        return self.kernel(replace(node, attrs={**a, "pads": [top, left, bottom, right], "ceil_mode": 0}), backend)
