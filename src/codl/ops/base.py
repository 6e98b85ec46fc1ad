"""What every operator family implements, and the context the ONNX importer hands it.

An :class:`OpFamily` covers one or more :class:`~codl.ir.OpKind` values and provides:

- ``from_onnx``: turn one ONNX node into codl attributes and inputs (constant operands
  such as a Reshape's target shape become attributes; weights stay constant inputs);
- ``infer``: output shapes and dtypes from input specs (no data touched);
- ``kernel``: a function over torch tensors that runs the node on any torch device,
  calling the kernels of a :class:`~codl.ops.backend.Backend` chosen when the function
  is made (a session or runner passes its processor's ``backend``);
- ``flops``: multiply-adds count twice; element-wise ops count one per output element.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Sequence

import numpy as np
import torch

from ..errors import GraphError
from ..ir.graph import DType, Node, OpKind, TensorSpec
from ..ir.regions import Box, Dim, default_axis
from .backend import LIBRARY, Backend

Kernel = Callable[..., "torch.Tensor | tuple[torch.Tensor, ...]"]
Shape = tuple[int, ...]


@dataclass
class OnnxNodeView:
    """One ONNX node as the importer shows it to a family's ``from_onnx``."""

    name: str
    op_type: str
    attrs: dict[str, Any]
    inputs: list[str]  # "" marks an omitted optional input
    const: Callable[[str], "np.ndarray | None"]  # value of a constant input, else None
    spec: Callable[[str], TensorSpec]  # spec of any input tensor
    n_outputs: int = 1

    def const_input(self, index: int, what: str) -> np.ndarray | None:
        """The constant value of input ``index`` (None if the input is omitted); fails
        when the input exists but is only known at run time."""
        if index >= len(self.inputs) or not self.inputs[index]:
            return None
        value = self.const(self.inputs[index])
        if value is None:
            raise GraphError(f"node {self.name!r} ({self.op_type}): input {index} ({what}) "
                             "must be a constant; run-time values are not supported here")
        return value


@dataclass
class Imported:
    """What ``from_onnx`` returns: the codl kind, the inputs kept, attributes, and any
    constants the family derived (e.g. a transposed weight), added to the graph."""

    op: OpKind
    inputs: list[str]
    attrs: dict[str, Any]
    constants: dict[str, np.ndarray] = field(default_factory=dict)
    n_outputs: int = 1  # ONNX outputs kept; optional extras (Dropout mask, ...) are dropped


class OpFamily:
    """Base class of an operator family; subclasses set ``kinds`` and ``onnx_types``."""

    kinds: ClassVar[tuple[OpKind, ...]] = ()
    onnx_types: ClassVar[tuple[str, ...]] = ()

    def from_onnx(self, view: OnnxNodeView) -> Imported:
        raise NotImplementedError

    def infer(self, node: Node, ins: Sequence[TensorSpec]) -> list[tuple[Shape, DType]]:
        raise NotImplementedError

    def kernel(self, node: Node, backend: Backend = LIBRARY) -> Kernel:
        """The function running ``node`` (inputs in order, as torch tensors) on ``backend``."""
        raise NotImplementedError

    def flops(self, node: Node, ins: Sequence[TensorSpec], outs: Sequence[TensorSpec]) -> int:
        return sum(o.numel for o in outs)

    # --- partitioning -----------------------------------------------------------------
    # A family that can compute part of its output overrides these three. The default is
    # "whole only": the node runs on one processor.

    def split_axes(self, node: Node, ins: Sequence[TensorSpec], out: TensorSpec) -> dict[Dim, int]:
        """Output axis for each partition dimension this node supports."""
        return {}

    def alignment(self, node: Node, ins: Sequence[TensorSpec], dim: Dim) -> int:
        """Split points along ``dim`` must be multiples of this for correctness."""
        return 1

    def input_boxes(self, node: Node, ins: Sequence[TensorSpec], out: TensorSpec, box: Box) -> list[Box]:
        """For output region ``box``, the region of every input (constants included:
        the executor slices them) that computing it needs."""
        raise NotImplementedError

    def partial_kernel(self, node: Node, ins: Sequence[TensorSpec], out: TensorSpec, box: Box,
                       backend: Backend = LIBRARY) -> Kernel:
        """A kernel computing output region ``box`` from inputs holding exactly
        ``input_boxes(..., box)``, on ``backend``."""
        return self.kernel(node, backend)


class Elementwise(OpFamily):
    """Split rule for ops whose output element depends on the same element of each input
    (numpy broadcasting): any axis of the default table, same region in, same out."""

    def split_axes(self, node: Node, ins: Sequence[TensorSpec], out: TensorSpec) -> dict[Dim, int]:
        return {d: a for d in Dim if (a := default_axis(len(out.shape), d)) is not None}

    def input_boxes(self, node: Node, ins: Sequence[TensorSpec], out: TensorSpec, box: Box) -> list[Box]:
        return [broadcast_box(box, i.shape) for i in ins]


def broadcast_box(box: Box, shape: Sequence[int]) -> Box:
    """The region of an input of ``shape`` that feeds output region ``box`` under numpy
    broadcasting (axes aligned on the right; size-1 axes read their only element)."""
    tail = box[len(box) - len(shape):] if shape else ()
    return tuple((0, 1) if d == 1 else se for se, d in zip(tail, shape))


def fail(node: Node | OnnxNodeView, message: str) -> GraphError:
    """A GraphError naming the node and its op type."""
    op = node.op.value if isinstance(node, Node) else node.op_type
    return GraphError(f"node {node.name!r} ({op}): {message}")


def norm_axis(axis: int, rank: int, node: Node | OnnxNodeView) -> int:
    if not -rank <= axis < rank:
        raise fail(node, f"axis {axis} out of range for rank {rank}")
    return axis % rank


def ints(values: Any) -> list[int]:
    return [int(v) for v in np.asarray(values).reshape(-1)]
