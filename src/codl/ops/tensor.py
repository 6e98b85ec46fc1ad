"""Data-movement operators: Concat, Split, Slice, Pad and Gather.

Attributes: Concat/Split ``axis`` (non-negative) and Split ``sizes``; Slice ``axes``,
``starts``, ``ends``, ``steps`` (resolved to in-range values, positive steps); Pad
``pads`` in ONNX order [begin_0, ..., begin_n, end_0, ..., end_n], ``mode`` (constant,
reflect, edge) and ``value``; Gather ``axis`` and either ``index`` (a scalar index, rank
drops) or a constant int64 indices input.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..ir.graph import DType, Node, OpKind, TensorSpec
from ..ir.regions import Box, Dim, default_axis, with_axis
from .backend import LIBRARY, Backend
from .base import Imported, Kernel, OnnxNodeView, OpFamily, Shape, fail, ints, norm_axis


class Concat(OpFamily):
    kinds = (OpKind.CONCAT,)
    onnx_types = ("Concat",)

    def from_onnx(self, view: OnnxNodeView) -> Imported:
        rank = len(view.spec(view.inputs[0]).shape)
        return Imported(OpKind.CONCAT, list(view.inputs), {"axis": norm_axis(int(view.attrs["axis"]), rank, view)})

    def infer(self, node: Node, ins: Sequence[TensorSpec]) -> list[tuple[Shape, DType]]:
        axis, first = node.attrs["axis"], ins[0].shape
        for s in ins[1:]:
            if len(s.shape) != len(first) or any(a != b for i, (a, b) in enumerate(zip(s.shape, first)) if i != axis):
                raise fail(node, f"inputs {[str(i) for i in ins]} differ outside axis {axis}")
        out = list(first)
        out[axis] = sum(s.shape[axis] for s in ins)
        return [(tuple(out), ins[0].dtype)]

    def kernel(self, node: Node, backend: Backend = LIBRARY) -> Kernel:
        axis = node.attrs["axis"]
        return lambda *xs: torch.cat(xs, axis)

    def flops(self, node: Node, ins: Sequence[TensorSpec], outs: Sequence[TensorSpec]) -> int:
        return 0

    # Any default axis except the concatenation axis: each input gives its own rows.
    def split_axes(self, node: Node, ins: Sequence[TensorSpec], out: TensorSpec) -> dict[Dim, int]:
        axes = {d: default_axis(len(out.shape), d) for d in Dim}
        return {d: a for d, a in axes.items() if a is not None and a != node.attrs["axis"]}

    def input_boxes(self, node: Node, ins: Sequence[TensorSpec], out: TensorSpec, box: Box) -> list[Box]:
        axis = node.attrs["axis"]
        return [with_axis(box, axis, 0, i.shape[axis]) for i in ins]


class Split(OpFamily):
    kinds = (OpKind.SPLIT,)
    onnx_types = ("Split",)

    def from_onnx(self, view: OnnxNodeView) -> Imported:
        shape = view.spec(view.inputs[0]).shape
        axis = norm_axis(int(view.attrs.get("axis", 0)), len(shape), view)
        sizes = view.const_input(1, "split")
        if sizes is None and "split" in view.attrs:
            sizes = view.attrs["split"]
        n_out = int(view.attrs.get("num_outputs", 0)) or view.n_outputs
        if sizes is None:
            per = -(-shape[axis] // n_out)
            sizes = [min(per, shape[axis] - i * per) for i in range(n_out)]
        sizes = ints(sizes)
        return Imported(OpKind.SPLIT, [view.inputs[0]], {"axis": axis, "sizes": sizes}, n_outputs=len(sizes))

    def infer(self, node: Node, ins: Sequence[TensorSpec]) -> list[tuple[Shape, DType]]:
        x, axis, sizes = ins[0], node.attrs["axis"], node.attrs["sizes"]
        if sum(sizes) != x.shape[axis] or len(sizes) != len(node.outputs):
            raise fail(node, f"sizes {sizes} do not split axis {axis} of {x} into {len(node.outputs)} outputs")
        return [(x.shape[:axis] + (s,) + x.shape[axis + 1:], x.dtype) for s in sizes]

    def kernel(self, node: Node, backend: Backend = LIBRARY) -> Kernel:
        axis, sizes = node.attrs["axis"], node.attrs["sizes"]
        return lambda x: torch.split(x, sizes, axis)

    def flops(self, node: Node, ins: Sequence[TensorSpec], outs: Sequence[TensorSpec]) -> int:
        return 0


class Slice(OpFamily):
    kinds = (OpKind.SLICE,)
    onnx_types = ("Slice",)

    def from_onnx(self, view: OnnxNodeView) -> Imported:
        shape = view.spec(view.inputs[0]).shape
        starts, ends = ints(view.const_input(1, "starts")), ints(view.const_input(2, "ends"))
        axes_in, steps_in = view.const_input(3, "axes"), view.const_input(4, "steps")
        axes = ints(axes_in) if axes_in is not None else list(range(len(starts)))
        steps = ints(steps_in) if steps_in is not None else [1] * len(starts)
        out_axes, out_starts, out_ends, out_steps = [], [], [], []
        for ax, st, en, sp in zip(axes, starts, ends, steps):
            ax = norm_axis(ax, len(shape), view)
            if sp <= 0:
                raise fail(view, f"slice step {sp} on axis {ax}: only positive steps are supported")
            dim = shape[ax]
            st = min(max(st + dim if st < 0 else st, 0), dim)
            en = min(max(en + dim if en < 0 else en, 0), dim)
            out_axes.append(ax), out_starts.append(st), out_ends.append(max(en, st)), out_steps.append(sp)
        return Imported(OpKind.SLICE, [view.inputs[0]],
                        {"axes": out_axes, "starts": out_starts, "ends": out_ends, "steps": out_steps})

    def infer(self, node: Node, ins: Sequence[TensorSpec]) -> list[tuple[Shape, DType]]:
        out = list(ins[0].shape)
        a = node.attrs
        for ax, st, en, sp in zip(a["axes"], a["starts"], a["ends"], a["steps"]):
            out[ax] = len(range(st, en, sp))
        return [(tuple(out), ins[0].dtype)]

    def kernel(self, node: Node, backend: Backend = LIBRARY) -> Kernel:
        a = node.attrs
        rank = max(a["axes"], default=-1) + 1
        index = [slice(None)] * rank
        for ax, st, en, sp in zip(a["axes"], a["starts"], a["ends"], a["steps"]):
            index[ax] = slice(st, en, sp)
        key = tuple(index)
        return lambda x: x[key]

    def flops(self, node: Node, ins: Sequence[TensorSpec], outs: Sequence[TensorSpec]) -> int:
        return 0


_PAD_MODES = {"constant": "constant", "reflect": "reflect", "edge": "replicate"}


class Pad(OpFamily):
    kinds = (OpKind.PAD,)
    onnx_types = ("Pad",)

    def from_onnx(self, view: OnnxNodeView) -> Imported:
        rank = len(view.spec(view.inputs[0]).shape)
        mode = view.attrs.get("mode", "constant")
        mode = mode.decode() if isinstance(mode, bytes) else mode
        if mode not in _PAD_MODES:
            raise fail(view, f"pad mode {mode!r} is not supported ({sorted(_PAD_MODES)} are)")
        raw = view.const_input(1, "pads")
        pads = ints(raw) if raw is not None else ints(view.attrs["pads"])
        value = view.const_input(2, "constant_value")
        value = float(value) if value is not None else float(view.attrs.get("value", 0.0))
        axes_in = view.const_input(3, "axes")
        if axes_in is not None:  # opset 18: pads only for the listed axes
            axes = [norm_axis(a, rank, view) for a in ints(axes_in)]
            full = [0] * (2 * rank)
            for i, ax in enumerate(axes):
                full[ax], full[ax + rank] = pads[i], pads[i + len(axes)]
            pads = full
        if any(p < 0 for p in pads):
            raise fail(view, f"negative pads {pads} are not supported")
        if mode != "constant" and any(pads[i] or pads[i + rank] for i in range(rank - 2)):
            raise fail(view, f"{mode} padding is supported on the last two axes only; pads {pads}")
        return Imported(OpKind.PAD, [view.inputs[0]], {"pads": pads, "mode": mode, "value": value})

    def infer(self, node: Node, ins: Sequence[TensorSpec]) -> list[tuple[Shape, DType]]:
        x, pads = ins[0], node.attrs["pads"]
        rank = len(x.shape)
        if len(pads) != 2 * rank:
            raise fail(node, f"pads {pads} do not match rank {rank}")
        return [(tuple(d + pads[i] + pads[i + rank] for i, d in enumerate(x.shape)), x.dtype)]

    def kernel(self, node: Node, backend: Backend = LIBRARY) -> Kernel:
        pads, mode, value = node.attrs["pads"], node.attrs["mode"], node.attrs["value"]
        rank = len(pads) // 2
        torch_mode = _PAD_MODES[mode]
        keep = rank if mode == "constant" else 2
        order = [p for ax in reversed(range(rank - keep, rank)) for p in (pads[ax], pads[ax + rank])]
        while len(order) > 2 and order[-1] == 0 and order[-2] == 0:
            order = order[:-2]
        if torch_mode == "constant":
            return lambda x: F.pad(x, order, "constant", value)
        return lambda x: F.pad(x, order, torch_mode)

    def flops(self, node: Node, ins: Sequence[TensorSpec], outs: Sequence[TensorSpec]) -> int:
        return 0

    # Channels of an NCHW tensor, when the channel axis is not padded.
    def split_axes(self, node: Node, ins: Sequence[TensorSpec], out: TensorSpec) -> dict[Dim, int]:
        pads, rank = node.attrs["pads"], len(out.shape)
        return {Dim.OC: 1} if rank == 4 and pads[1] == 0 and pads[1 + rank] == 0 else {}

    def input_boxes(self, node: Node, ins: Sequence[TensorSpec], out: TensorSpec, box: Box) -> list[Box]:
        x = ins[0].shape
        return [tuple(box[i] if i == 1 else (0, d) for i, d in enumerate(x))]


class Gather(OpFamily):
    kinds = (OpKind.GATHER,)
    onnx_types = ("Gather",)

    def from_onnx(self, view: OnnxNodeView) -> Imported:
        shape = view.spec(view.inputs[0]).shape
        axis = norm_axis(int(view.attrs.get("axis", 0)), len(shape), view)
        idx = np.asarray(view.const_input(1, "indices"), dtype=np.int64)
        if np.any(idx < -shape[axis]) or np.any(idx >= shape[axis]):
            raise fail(view, f"indices out of range for axis {axis} of size {shape[axis]}")
        idx = idx % shape[axis]
        if idx.ndim == 0:
            return Imported(OpKind.GATHER, [view.inputs[0]], {"axis": axis, "index": int(idx)})
        name = f"{view.name}.indices"
        return Imported(OpKind.GATHER, [view.inputs[0], name], {"axis": axis, "index": None}, {name: idx})

    def infer(self, node: Node, ins: Sequence[TensorSpec]) -> list[tuple[Shape, DType]]:
        x, axis = ins[0].shape, node.attrs["axis"]
        mid = () if node.attrs["index"] is not None else ins[1].shape
        return [(x[:axis] + tuple(mid) + x[axis + 1:], ins[0].dtype)]

    def kernel(self, node: Node, backend: Backend = LIBRARY) -> Kernel:
        axis, index = node.attrs["axis"], node.attrs["index"]
        if index is not None:
            return lambda x: x.select(axis, index)

        def gather(x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
            picked = torch.index_select(x, axis, idx.reshape(-1))
            return picked.reshape(x.shape[:axis] + idx.shape + x.shape[axis + 1:])
        return gather

    def flops(self, node: Node, ins: Sequence[TensorSpec], outs: Sequence[TensorSpec]) -> int:
        return 0
