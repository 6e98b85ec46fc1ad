"""Spatial resize of NCHW tensors (ONNX Resize).

Attributes: ``mode`` ("nearest" or "linear"), ``align_corners`` (0/1, linear only),
``size`` [Ho, Wo], and ``scales`` [sh, sw] when the model gave scales (the source index
is then ``dst / scale``, as ONNX's asymmetric and half-pixel rules say), else null.
Supported: nearest with asymmetric coordinates and floor rounding (PyTorch's
``nearest``); bilinear with half_pixel, pytorch_half_pixel or align_corners.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F

from ..ir.graph import DType, Node, OpKind, TensorSpec
from ..ir.regions import Box, Dim
from .backend import LIBRARY, Backend
from .base import Imported, Kernel, OnnxNodeView, OpFamily, Shape, fail


def _text(value: object, default: str) -> str:
    if value is None:
        return default
    return value.decode() if isinstance(value, bytes) else str(value)


class Resize(OpFamily):
    kinds = (OpKind.RESIZE,)
    onnx_types = ("Resize",)

    def from_onnx(self, view: OnnxNodeView) -> Imported:
        shape = view.spec(view.inputs[0]).shape
        if len(shape) != 4:
            raise fail(view, f"only NCHW resize is supported; input is {view.spec(view.inputs[0])}")
        mode = _text(view.attrs.get("mode"), "nearest")
        coord = _text(view.attrs.get("coordinate_transformation_mode"), "half_pixel")
        nearest = _text(view.attrs.get("nearest_mode"), "round_prefer_floor")
        scales, sizes = view.const_input(2, "scales"), view.const_input(3, "sizes")
        if scales is not None and scales.size == 0:
            scales = None
        if sizes is not None and sizes.size:
            size = [int(s) for s in sizes.reshape(-1)]
            if size[:2] != list(shape[:2]):
                raise fail(view, "resizing the batch or channel axes is not supported")
            size, scale_hw = size[2:], None
        elif scales is not None:
            sc = [float(s) for s in scales.reshape(-1)]
            if sc[:2] != [1.0, 1.0]:
                raise fail(view, f"scales {sc}: resizing the batch or channel axes is not supported")
            scale_hw = sc[2:]
            size = [int(math.floor(d * s)) for d, s in zip(shape[2:], scale_hw)]
        else:
            raise fail(view, "neither scales nor sizes given")
        if mode == "nearest":
            if coord != "asymmetric" or nearest != "floor":
                raise fail(view, f"nearest resize with coordinate mode {coord!r} and rounding {nearest!r} is "
                                 "not supported (asymmetric + floor is)")
            return Imported(OpKind.RESIZE, [view.inputs[0]],
                            {"mode": "nearest", "align_corners": 0, "size": size, "scales": scale_hw})
        if mode != "linear" or coord not in ("half_pixel", "pytorch_half_pixel", "align_corners"):
            raise fail(view, f"resize mode {mode!r} with coordinates {coord!r} is not supported "
                             "(nearest/asymmetric, linear/half_pixel, linear/align_corners are)")
        align = int(coord == "align_corners")
        return Imported(OpKind.RESIZE, [view.inputs[0]],
                        {"mode": "linear", "align_corners": align, "size": size,
                         "scales": None if align else scale_hw})

    def infer(self, node: Node, ins: Sequence[TensorSpec]) -> list[tuple[Shape, DType]]:
        x = ins[0]
        if len(x.shape) != 4:
            raise fail(node, f"input must be NCHW; got {x}")
        return [((x.shape[0], x.shape[1], *node.attrs["size"]), x.dtype)]

    def kernel(self, node: Node, backend: Backend = LIBRARY) -> Kernel:
        a = node.attrs
        mode = "nearest" if a["mode"] == "nearest" else "bilinear"
        align = bool(a["align_corners"]) if mode == "bilinear" else None
        if a["scales"] is not None:
            scales = tuple(a["scales"])
            return lambda x: F.interpolate(x, scale_factor=scales, mode=mode, align_corners=align)
        size = tuple(a["size"])
        return lambda x: F.interpolate(x, size=size, mode=mode, align_corners=align)

    def flops(self, node: Node, ins: Sequence[TensorSpec], outs: Sequence[TensorSpec]) -> int:
        return outs[0].numel * (1 if node.attrs["mode"] == "nearest" else 4)

    # Channels always; rows for nearest resizing by an integer factor (row r reads r // f).
    def _row_factor(self, node: Node, ins: Sequence[TensorSpec]) -> int | None:
        h_in, h_out, scales = ins[0].shape[2], node.attrs["size"][0], node.attrs["scales"]
        if node.attrs["mode"] != "nearest" or h_out % h_in or (scales and scales[0] != h_out // h_in):
            return None
        return h_out // h_in

    def split_axes(self, node: Node, ins: Sequence[TensorSpec], out: TensorSpec) -> dict[Dim, int]:
        return {Dim.OC: 1, Dim.H: 2} if self._row_factor(node, ins) else {Dim.OC: 1}

    def input_boxes(self, node: Node, ins: Sequence[TensorSpec], out: TensorSpec, box: Box) -> list[Box]:
        x = ins[0].shape
        f = self._row_factor(node, ins) if box[2] != (0, out.shape[2]) else None
        rows = (box[2][0] // f, (box[2][1] - 1) // f + 1) if f else (0, x[2])
        return [(box[0], box[1], rows, (0, x[3]))]

    def partial_kernel(self, node: Node, ins: Sequence[TensorSpec], out: TensorSpec, box: Box,
                       backend: Backend = LIBRARY) -> Kernel:
        f = self._row_factor(node, ins) if box[2] != (0, out.shape[2]) else None
        if not f:
            return self.kernel(node, backend)
        r0, r1 = box[2]
        skip, width, scales = r0 - (r0 // f) * f, node.attrs["size"][1], node.attrs["scales"]

        def rows(x: torch.Tensor) -> torch.Tensor:
            if scales:  # keep the width's source-index rule (dst / scale)
                y = F.interpolate(x, scale_factor=(float(f), scales[1]), mode="nearest")
            else:
                y = F.interpolate(x, size=(x.shape[2] * f, width), mode="nearest")
            return y[:, :, skip:skip + r1 - r0]
        return rows
