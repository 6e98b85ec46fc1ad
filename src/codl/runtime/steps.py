"""The steps a processor runs, prepared once per session from its program in the schedule.

A processor's values live in integer slots of a list made fresh per call from a
template (which holds its constants). Three kinds of step:

- :class:`Run`: a node's kernel (whole, or partial for the region this processor
  computes) on its inputs, each obtained by a :class:`Fetch` (a slot, or a view into
  it) or an :class:`Assemble` (a new buffer filled from this processor's own piece and
  the piece it received);
- :class:`Send`: a region of a local value goes to the other processor by a channel;
- :class:`Recv`: the region comes in from a channel into a slot.

Every step lists the slots to drop after it (their last use), so intermediates die as
early as in the single-processor runner.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch

from ..errors import CodlError, ExecutionError
from ..ir.graph import Node
from .channels import Channel

Local = list  # a processor's slots for one call: list[torch.Tensor | None]


@dataclass(frozen=True, slots=True)
class Fetch:
    """Local value ``slot``, or the view ``slices`` of it."""

    slot: int
    slices: tuple[slice, ...] | None = None

    def get(self, local: Local) -> torch.Tensor:
        value = local[self.slot]
        return value if self.slices is None else value[self.slices]


@dataclass(frozen=True, slots=True)
class Assemble:
    """A new buffer of ``shape`` filled from pieces: ``parts`` = (slot, source slices,
    destination slices)."""

    parts: tuple[tuple[int, tuple[slice, ...], tuple[slice, ...]], ...]
    shape: tuple[int, ...]
    channels_last: bool

    def get(self, local: Local) -> torch.Tensor:
        first = local[self.parts[0][0]]
        fmt = torch.channels_last if self.channels_last and len(self.shape) == 4 else torch.contiguous_format
        buf = torch.empty(self.shape, dtype=first.dtype, device=first.device, memory_format=fmt)
        for slot, src, dst in self.parts:
            buf[dst] = local[slot][src]
        return buf


Input = Fetch | Assemble


@dataclass(eq=False, slots=True)
class Run:
    node: Node
    kernel: Callable[..., Any]
    inputs: tuple[Input, ...]
    outputs: tuple[int, ...]
    free: tuple[int, ...]
    slots: tuple[int, ...] | None = None  # set when every input is a whole local value (the common case)
    kind = "run"

    def __post_init__(self) -> None:
        if all(type(f) is Fetch and f.slices is None for f in self.inputs):
            self.slots = tuple(f.slot for f in self.inputs)  # type: ignore[union-attr]

    @property
    def name(self) -> str:
        return self.node.name


@dataclass(eq=False, slots=True)
class Send:
    """``local[slot][slices]`` (region ``name`` of a tensor) goes out by ``channel``."""

    name: str
    channel: Channel
    slot: int
    slices: tuple[slice, ...]
    free: tuple[int, ...]
    kind = "send"


@dataclass(eq=False, slots=True)
class Recv:
    """Tensor ``name``'s region comes in by ``channel`` into ``local[slot]``."""

    name: str
    channel: Channel
    slot: int
    free: tuple[int, ...]
    kind = "recv"


Step = Run | Send | Recv


def call_hook(hook: Callable[[int, "Step"], None], proc: int, step: "Step", where: str) -> None:
    """The fault hook before ``step``; an error it raises fails the step, named."""
    try:
        hook(proc, step)
    except CodlError:
        raise
    except Exception as e:
        raise ExecutionError(f"{step.kind} step {step.name!r} failed{where}: {e}") from e


def run_step(step: Run, local: Local, where: str) -> None:
    """Run one node and store its outputs; failures name the node, shapes and processor."""
    slots = step.slots
    args = [local[i] for i in slots] if slots is not None else [f.get(local) for f in step.inputs]
    try:
        result = step.kernel(*args)
    except Exception as e:
        raise ExecutionError.of_node(step.node, args, e, where) from e
    if isinstance(result, torch.Tensor):
        local[step.outputs[0]] = result
    else:
        for o, r in zip(step.outputs, result):
            local[o] = r
