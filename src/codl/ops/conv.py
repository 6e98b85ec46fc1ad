"""2-D convolution and transposed convolution (groups, depthwise, stride, padding,
dilation, bias).

Attributes (both kinds): ``kernel`` [kh, kw], ``strides`` [sh, sw], ``pads``
[top, left, bottom, right], ``dilations`` [dh, dw], ``group``; transposed conv adds
``output_padding`` [oh, ow]. Inputs: x (N, C, H, W), weight, optional bias.
Weights: conv (OC, IC/group, kh, kw); transposed conv (IC, OC/group, kh, kw).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Sequence

import torch
import torch.nn.functional as F

from ..ir.graph import DType, Node, OpKind, TensorSpec
from ..ir.regions import Box, Dim, conv_rows, full_box, with_axis
from . import own_cpu, own_kernels
from .backend import LIBRARY, Backend
from .base import Imported, Kernel, OnnxNodeView, OpFamily, Shape, fail, ints
from .fastest import faster_of


def _window_attrs(view: OnnxNodeView, kernel: list[int]) -> dict:
    a = view.attrs
    strides = ints(a.get("strides", [1, 1]))
    dilations = ints(a.get("dilations", [1, 1]))
    pads = ints(a.get("pads", [0, 0, 0, 0]))  # ONNX: [top, left, bottom, right]
    for what, values, n, low in (("kernel", kernel, 2, 1), ("strides", strides, 2, 1), ("dilations", dilations, 2, 1),
                                 ("pads", pads, 4, 0)):
        if len(values) != n or min(values) < low:
            raise fail(view, f"{what} {values}: expected {n} values, each at least {low}")
    auto_pad = a.get("auto_pad", "NOTSET")
    if isinstance(auto_pad, bytes):
        auto_pad = auto_pad.decode()
    if auto_pad in ("SAME_UPPER", "SAME_LOWER") and view.op_type in ("Conv", "MaxPool", "AveragePool"):
        h, w = view.spec(view.inputs[0]).shape[2:]
        pads = [0, 0, 0, 0]
        for i, size in enumerate((h, w)):
            out = -(-size // strides[i])
            total = max(0, (out - 1) * strides[i] + (kernel[i] - 1) * dilations[i] + 1 - size)
            small, big = total // 2, total - total // 2
            pads[i], pads[i + 2] = (small, big) if auto_pad == "SAME_UPPER" else (big, small)
    elif auto_pad not in ("NOTSET", "VALID"):
        raise fail(view, f"auto_pad={auto_pad} is not supported (NOTSET, VALID, SAME_UPPER, SAME_LOWER are)")
    return {"kernel": kernel, "strides": strides, "pads": pads, "dilations": dilations}


def conv_out_size(size: int, k: int, s: int, p0: int, p1: int, d: int) -> int:
    """Output length of a convolution or pooling window along one axis."""
    return (size + p0 + p1 - d * (k - 1) - 1) // s + 1


def symmetric_padding(pads: Sequence[int], strides: Sequence[int]) -> tuple[tuple[int, int], tuple[int, int]] | None:
    """Uneven padding ``pads`` ([top, left, bottom, right]) done as the larger of each
    pair on both sides, which the libraries take without a padded copy of the input:
    returns (the symmetric pads, the output rows and columns to skip at the start), the
    surplus output rows and columns at the end being dropped as well; None where the
    surplus at the start would not be whole output rows (stride 2 with one row of
    padding added at the top, say)."""
    out_pads, skip = [], []
    for lo, hi, s in ((pads[0], pads[2], strides[0]), (pads[1], pads[3], strides[1])):
        big = max(lo, hi)
        if (big - lo) % s:
            return None
        out_pads.append(big)
        skip.append((big - lo) // s)
    return (out_pads[0], out_pads[1]), (skip[0], skip[1])


# A 1x1 stride-1 conv of a channels-last tensor is a GEMM over its pixels. In bf16 on the
# CPU, oneDNN's 1x1 conv kernels were up to 2.3x slower than its GEMM on small images
# (channels 32-1024, 7x7 to 14x14 pixels; about level at 28x28, the conv 2-4% faster at
# 56x56; fp32 level throughout): docs/results/baselines.md, measured on the development CPU.
GEMM_1X1_MAX_PIXELS = 28 * 28


def _pointwise_conv(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None = None) -> torch.Tensor:
    n, c, h, wd = x.shape
    if (x.dtype == torch.bfloat16 and x.device.type == "cpu" and h * wd < GEMM_1X1_MAX_PIXELS
            and x.is_contiguous(memory_format=torch.channels_last)):
        y = F.linear(x.permute(0, 2, 3, 1).reshape(-1, c), w.reshape(w.shape[0], c), b)
        return y.view(n, h, wd, -1).permute(0, 3, 1, 2)  # channels-last, no copy
    return F.conv2d(x, w, b)


def _library_conv2d(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None, stride: tuple[int, int],
                    pad: tuple[int, int] | int, dil: tuple[int, int], groups: int) -> torch.Tensor:
    """F.conv2d, around a crash: PyTorch 2.13's CPU build segfaults on a grouped, dilated,
    strided conv of a channels-last input one pixel wide (seen with (1, 4, 3, 1) input,
    groups 2, stride 2, dilation 2, padding (0, 1)); such an input runs as NCHW and its
    output goes back to channels-last."""
    if (x.device.type == "cpu" and groups > 1 and max(dil) > 1 and min(x.shape[2:]) == 1
            and x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()):
        y = F.conv2d(x.contiguous(), w, b, stride, pad, dil, groups)
        return y.contiguous(memory_format=torch.channels_last)
    return F.conv2d(x, w, b, stride, pad, dil, groups)


def _check_4d(node: Node, x: TensorSpec) -> None:
    if len(x.shape) != 4:
        raise fail(node, f"only 2-D convolution on NCHW tensors is supported; input is {x}")


class Conv(OpFamily):
    kinds = (OpKind.CONV,)
    onnx_types = ("Conv",)

    def from_onnx(self, view: OnnxNodeView) -> Imported:
        w = view.spec(view.inputs[1])
        if len(w.shape) != 4:
            raise fail(view, f"only 2-D convolution is supported; weight is {w}")
        attrs = _window_attrs(view, list(w.shape[2:]))
        attrs["group"] = int(view.attrs.get("group", 1))
        return Imported(OpKind.CONV, [i for i in view.inputs if i], attrs)

    def infer(self, node: Node, ins: Sequence[TensorSpec]) -> list[tuple[Shape, DType]]:
        x, w = ins[0], ins[1]
        _check_4d(node, x)
        a = node.attrs
        n, c, h, wd = x.shape
        if c != w.shape[1] * a["group"] or w.shape[0] % a["group"]:
            raise fail(node, f"input {x} and weight {w} disagree with group={a['group']}")
        (kh, kw), (sh, sw), (pt, pl, pb, pr), (dh, dw) = a["kernel"], a["strides"], a["pads"], a["dilations"]
        ho, wo = conv_out_size(h, kh, sh, pt, pb, dh), conv_out_size(wd, kw, sw, pl, pr, dw)
        if ho <= 0 or wo <= 0:
            raise fail(node, f"output would be empty for input {x}")
        return [((n, w.shape[0], ho, wo), x.dtype)]

    def kernel(self, node: Node, backend: Backend = LIBRARY) -> Kernel:
        library = self._library_kernel(node)
        a = node.attrs
        pt, pl, pb, pr = a["pads"]
        (kh, kw), stride, dil, groups = a["kernel"], tuple(a["strides"]), tuple(a["dilations"]), a["group"]
        units = backend.gpu_units

        def own_cpu_conv(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None = None) -> torch.Tensor:
            if own_cpu.supports(x, groups):
                return own_cpu.conv2d(x, w, b, stride, (pt, pl, pb, pr), dil)
            return library(x, w, b)

        def own_gpu_conv(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None = None) -> torch.Tensor:
            if not own_kernels.supports(x, groups, w):
                return library(x, w, b)
            out_hw = (conv_out_size(x.shape[2], kh, stride[0], pt, pb, dil[0]),
                      conv_out_size(x.shape[3], kw, stride[1], pl, pr, dil[1]))
            return own_kernels.conv2d(x, w, b, stride, (pt, pl), dil, groups, out_hw, units)
        if backend.own_cpu:
            return own_cpu_conv
        if units is None:
            return library
        if backend.fastest:
            key = ("conv", kh, kw, stride, (pt, pl, pb, pr), dil, groups, units)
            return faster_of(key, library, own_gpu_conv, lambda x, w, b=None: own_kernels.supports(x, groups, w))
        return own_gpu_conv

    @staticmethod
    def _library_kernel(node: Node) -> Kernel:
        """The conv through PyTorch's libraries (cuDNN, oneDNN, ...)."""
        a = node.attrs
        pt, pl, pb, pr = a["pads"]
        (kh, kw), stride, dil, groups = a["kernel"], tuple(a["strides"]), tuple(a["dilations"]), a["group"]
        if pt == pb and pl == pr:
            pad = (pt, pl)
            if (kh, kw, *stride, *dil, groups, pt, pl) == (1, 1, 1, 1, 1, 1, 1, 0, 0):
                return _pointwise_conv
            return lambda x, w, b=None: _library_conv2d(x, w, b, stride, pad, dil, groups)
        extra = (pl, pr, pt, pb)
        padded_copy = lambda x, w, b=None: _library_conv2d(F.pad(x, extra), w, b, stride, 0, dil, groups)  # noqa: E731
        sym = symmetric_padding(a["pads"], stride)
        if sym is None:  # the extra rows or columns would not fall on whole output rows
            return padded_copy
        pad, (top, left) = sym

        def conv(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None = None) -> torch.Tensor:
            if not x.shape[2] or not x.shape[3]:  # a share of padding only: libraries refuse empty inputs
                return padded_copy(x, w, b)
            oh = conv_out_size(x.shape[2], kh, stride[0], pt, pb, dil[0])
            ow = conv_out_size(x.shape[3], kw, stride[1], pl, pr, dil[1])
            return _library_conv2d(x, w, b, stride, pad, dil, groups)[:, :, top:top + oh, left:left + ow]
        return conv

    def flops(self, node: Node, ins: Sequence[TensorSpec], outs: Sequence[TensorSpec]) -> int:
        w = ins[1].shape
        return 2 * outs[0].numel * w[1] * w[2] * w[3]

    # Split on output channels (whole groups: a grouped conv's channel share must cover
    # whole groups) or on output rows (input rows plus the halo).
    def split_axes(self, node: Node, ins: Sequence[TensorSpec], out: TensorSpec) -> dict[Dim, int]:
        return {Dim.OC: 1, Dim.H: 2}

    def alignment(self, node: Node, ins: Sequence[TensorSpec], dim: Dim) -> int:
        group = node.attrs["group"]
        return ins[1].shape[0] // group if dim is Dim.OC and group > 1 else 1

    def input_boxes(self, node: Node, ins: Sequence[TensorSpec], out: TensorSpec, box: Box) -> list[Box]:
        x, w = ins[0], ins[1]
        (c0, c1), (r0, r1) = box[1], box[2]
        per_group_out, per_group_in = w.shape[0] // node.attrs["group"], w.shape[1]
        if node.attrs["group"] > 1 and (c0 % per_group_out or c1 % per_group_out):
            raise fail(node, f"output channels [{c0}, {c1}) do not cover whole groups of {per_group_out}")
        g0, g1 = (c0 // per_group_out, c1 // per_group_out) if node.attrs["group"] > 1 else (0, 1)
        a = node.attrs
        lo, hi, _, _ = conv_rows(r0, r1, a["kernel"][0], a["strides"][0], a["pads"][0], a["dilations"][0], x.shape[2])
        x_box = (box[0], (g0 * per_group_in, g1 * per_group_in), (lo, hi), (0, x.shape[3]))
        return [x_box, with_axis(full_box(w.shape), 0, c0, c1)] + [((c0, c1),)] * (len(ins) - 2)

    def partial_kernel(self, node: Node, ins: Sequence[TensorSpec], out: TensorSpec, box: Box,
                       backend: Backend = LIBRARY) -> Kernel:
        a = node.attrs
        (c0, c1), (r0, r1) = box[1], box[2]
        per_group_out = ins[1].shape[0] // a["group"]
        _, _, pad_lo, pad_hi = conv_rows(r0, r1, a["kernel"][0], a["strides"][0], a["pads"][0], a["dilations"][0], ins[0].shape[2])
        groups = (c1 - c0) // per_group_out if a["group"] > 1 else 1
        attrs = {**a, "pads": [pad_lo, a["pads"][1], pad_hi, a["pads"][3]], "group": groups}
        return self.kernel(replace(node, attrs=attrs), backend)


class ConvTranspose(OpFamily):
    kinds = (OpKind.CONV_TRANSPOSE,)
    onnx_types = ("ConvTranspose",)

    def from_onnx(self, view: OnnxNodeView) -> Imported:
        w = view.spec(view.inputs[1])
        if len(w.shape) != 4:
            raise fail(view, f"only 2-D transposed convolution is supported; weight is {w}")
        if view.attrs.get("auto_pad", "NOTSET") not in ("NOTSET", b"NOTSET", "VALID", b"VALID"):
            raise fail(view, "auto_pad other than NOTSET/VALID is not supported")
        attrs = _window_attrs(view, list(w.shape[2:]))
        attrs["group"] = int(view.attrs.get("group", 1))
        attrs["output_padding"] = ints(view.attrs.get("output_padding", [0, 0]))
        if "output_shape" in view.attrs:  # explicit output size: derive the pads (SAME_UPPER-like)
            x = view.spec(view.inputs[0])
            want = ints(view.attrs["output_shape"])[-2:]
            pads = [0, 0, 0, 0]
            for i in range(2):
                full = (x.shape[2 + i] - 1) * attrs["strides"][i] + (attrs["kernel"][i] - 1) * attrs["dilations"][i] + 1 + attrs["output_padding"][i]
                total = full - want[i]
                if total < 0:
                    raise fail(view, f"output_shape {want} larger than the full output")
                pads[i], pads[i + 2] = total // 2, total - total // 2
            attrs["pads"] = pads
        return Imported(OpKind.CONV_TRANSPOSE, [i for i in view.inputs if i], attrs)

    def infer(self, node: Node, ins: Sequence[TensorSpec]) -> list[tuple[Shape, DType]]:
        x, w = ins[0], ins[1]
        _check_4d(node, x)
        a = node.attrs
        if x.shape[1] != w.shape[0]:
            raise fail(node, f"input {x} and weight {w} disagree on channels")
        out = [x.shape[0], w.shape[1] * a["group"]]
        for i in range(2):
            full = (x.shape[2 + i] - 1) * a["strides"][i] + (a["kernel"][i] - 1) * a["dilations"][i] + 1
            out.append(full + a["output_padding"][i] - a["pads"][i] - a["pads"][i + 2])
        return [(tuple(out), x.dtype)]

    def kernel(self, node: Node, backend: Backend = LIBRARY) -> Kernel:
        a = node.attrs
        pt, pl, pb, pr = a["pads"]
        stride, dil, groups, opad = tuple(a["strides"]), tuple(a["dilations"]), a["group"], tuple(a["output_padding"])
        if pt == pb and pl == pr:
            pad = (pt, pl)
            return lambda x, w, b=None: F.conv_transpose2d(x, w, b, stride, pad, opad, groups, dil)

        def crop(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None = None) -> torch.Tensor:
            y = F.conv_transpose2d(x, w, b, stride, 0, opad, groups, dil)
            return y[:, :, pt:y.shape[2] - pb, pl:y.shape[3] - pr]
        return crop

    def flops(self, node: Node, ins: Sequence[TensorSpec], outs: Sequence[TensorSpec]) -> int:
        w = ins[1].shape
        return 2 * ins[0].numel * w[1] * w[2] * w[3]

    # Split on output channels (whole groups when grouped) or output rows: output row o
    # gathers input rows i with i * s - pad + j * d == o for a kernel tap j.
    def split_axes(self, node: Node, ins: Sequence[TensorSpec], out: TensorSpec) -> dict[Dim, int]:
        return {Dim.OC: 1, Dim.H: 2}

    def alignment(self, node: Node, ins: Sequence[TensorSpec], dim: Dim) -> int:
        return ins[1].shape[1] if dim is Dim.OC and node.attrs["group"] > 1 else 1

    @staticmethod
    def _rows(node: Node, size: int, r0: int, r1: int) -> tuple[int, int]:
        a = node.attrs
        k, s, p, d = a["kernel"][0], a["strides"][0], a["pads"][0], a["dilations"][0]
        lo = min(max(-(-(r0 + p - (k - 1) * d) // s), 0), size)
        return lo, max(min((r1 - 1 + p) // s + 1, size), lo)

    def _groups(self, node: Node, ins: Sequence[TensorSpec], c0: int, c1: int) -> tuple[int, int]:
        per_group = ins[1].shape[1]
        if node.attrs["group"] > 1 and (c0 % per_group or c1 % per_group):
            raise fail(node, f"output channels [{c0}, {c1}) do not cover whole groups of {per_group}")
        return (c0 // per_group, c1 // per_group) if node.attrs["group"] > 1 else (0, 1)

    def input_boxes(self, node: Node, ins: Sequence[TensorSpec], out: TensorSpec, box: Box) -> list[Box]:
        x, w = ins[0], ins[1]
        (c0, c1), (r0, r1) = box[1], box[2]
        g0, g1 = self._groups(node, ins, c0, c1)
        in_per_group = x.shape[1] // node.attrs["group"]
        channels = (g0 * in_per_group, g1 * in_per_group)
        # all output rows: the whole-op kernel runs, reading every input row
        lo, hi = (0, x.shape[2]) if (r0, r1) == (0, out.shape[2]) else self._rows(node, x.shape[2], r0, r1)
        if node.attrs["group"] > 1:
            w_box = with_axis(full_box(w.shape), 0, *channels)
        else:
            w_box = with_axis(full_box(w.shape), 1, c0, c1)
        return [(box[0], channels, (lo, hi), (0, x.shape[3])), w_box] + [((c0, c1),)] * (len(ins) - 2)

    def partial_kernel(self, node: Node, ins: Sequence[TensorSpec], out: TensorSpec, box: Box,
                       backend: Backend = LIBRARY) -> Kernel:
        a = node.attrs
        (c0, c1), (r0, r1) = box[1], box[2]
        g0, g1 = self._groups(node, ins, c0, c1)
        if (r0, r1) == (0, out.shape[2]):
            return self.kernel(replace(node, attrs={**a, "group": g1 - g0}), backend)
        lo, _ = self._rows(node, ins[0].shape[2], r0, r1)
        stride, dil = tuple(a["strides"]), tuple(a["dilations"])
        origin, left, width = lo * a["strides"][0] - a["pads"][0], a["pads"][1], out.shape[3]

        def rows(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None = None) -> torch.Tensor:
            # The slice's full transposed conv starts at output row `origin` and column
            # -left; copy the part inside the wanted rows, add the bias everywhere.
            y = torch.zeros((x.shape[0], c1 - c0, r1 - r0, width), dtype=x.dtype, device=x.device)
            if x.shape[2]:
                full = F.conv_transpose2d(x, w, None, stride, 0, 0, g1 - g0, dil)
                top, bottom = max(r0, origin), min(r1, origin + full.shape[2])
                right = min(width, full.shape[3] - left)
                if bottom > top and right > 0:
                    y[:, :, top - r0:bottom - r0, :right] = full[:, :, top - origin:bottom - origin, left:left + right]
            return y if b is None else y + b.reshape(1, -1, 1, 1)
        return rows

