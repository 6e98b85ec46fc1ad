"""A session's preparation: the schedule's steps turned into typed steps over numbered
slots, one channel per region that crosses between the processors, and every constant
sliced to the region each processor reads and converted to its type.

``Prepared(graph, schedule, processors)`` does it once; the session then only runs the
steps (:mod:`codl.runtime.session`).
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import numpy as np
import torch

from ..ir.graph import Graph
from ..ir.regions import box_shape, full_box, intersect, is_empty, relative
from ..ops import family
from ..processors import Processor, ProcessorKind
from .channels import Channel, DeviceChannel, HostChannel
from .reference import to_processor
from .schedule import InputSource, RunStep, Schedule, SendStep
from .steps import Assemble, Fetch, Input, Recv, Run, Send, Step


class Prepared:
    """What a session runs: ``programs`` (typed steps per processor), ``channels``,
    ``n_flags`` (the flags the channels use), ``outputs`` (how processor 0 fetches each
    graph output), ``templates`` (each processor's slots with its constants in place),
    ``reads`` (the graph inputs each processor reads) and ``consts``."""

    def __init__(self, graph: Graph, schedule: Schedule, processors: tuple[Processor, Processor]) -> None:
        self.graph, self.schedule, self.processors = graph, schedule, processors
        self.channels, self.n_flags = self._make_channels()
        self.slots: dict[tuple[str, str], int] = {("own", s.name): i for i, s in enumerate(graph.inputs)}
        self.consts: tuple[dict[int, torch.Tensor], dict[int, torch.Tensor]] = ({}, {})
        self.programs: tuple[list[Step], list[Step]] = (self._compile(0), self._compile(1))
        self.outputs = [self._fetch(src, 0, {}) for src in schedule.programs[0].outputs]
        self.templates = [self._template(c) for c in self.consts]
        self.reads = [self._inputs_read(p) for p in (0, 1)]

    def _make_channels(self) -> tuple[list[Channel], int]:
        """One channel per crossing region, and the number of flags they use."""
        p0, p1 = self.processors
        channels: list[Channel] = []
        flag = 0
        for ch, (sender, tensor, box) in enumerate(self.schedule.channels):
            if p1.kind is ProcessorKind.CUDA:
                spec = self.graph.spec(tensor)
                dtype = p0.torch_dtype if spec.dtype.is_float else getattr(torch, spec.dtype.value)
                c: Channel = DeviceChannel(ch, tensor, box, sender, p0, p1, dtype, flag)
                flag += c.n_flags  # type: ignore[attr-defined]
            else:
                c = HostChannel(ch, tensor, box, sender, self.processors[sender], self.processors[1 - sender])
            channels.append(c)
        return channels, flag

    def _compile(self, proc: int) -> list[Step]:
        program = self.schedule.programs[proc]
        consts = self.consts[proc]
        steps: list[Step] = []
        for step, frees in zip(program.steps, program.frees):
            free = tuple(self._slot(k) for k in frees)
            if isinstance(step, RunStep):
                node, graph = step.node, self.graph
                out = graph.spec(node.outputs[0])
                whole = step.box == full_box(out.shape) or len(node.outputs) > 1
                fam, backend = family(node.op), self.processors[proc].backend
                kernel = (fam.kernel(node, backend) if whole else
                          fam.partial_kernel(node, [graph.spec(i) for i in node.inputs], out, step.box, backend))
                steps.append(Run(node, kernel, tuple(self._fetch(src, proc, consts) for src in step.inputs),
                                 tuple(self._slot(("own", o)) for o in node.outputs), free))
            elif isinstance(step, SendStep):
                origin = self.schedule.held[proc][step.tensor]
                steps.append(Send(step.tensor, self.channels[step.channel], self._slot(("own", step.tensor)),
                                  relative(step.box, origin), free))
            else:
                steps.append(Recv(step.tensor, self.channels[step.channel], self._slot(("recv", step.tensor)), free))
        return steps

    def _slot(self, key: tuple[str, str]) -> int:
        return self.slots.setdefault(key, len(self.slots))

    def _piece_box(self, piece: tuple[str, str], proc: int) -> Any:
        kind, name = piece
        if kind == "own":
            return self.schedule.held[proc][name]
        return next(box for sender, t, box in self.schedule.channels if t == name and sender != proc)

    def _fetch(self, src: InputSource, proc: int, consts: dict[int, torch.Tensor]) -> Input:
        if src.pieces[0][0] == "const":
            slot = self._slot(("const", f"{proc}:{src.tensor}:{src.box}"))
            if slot not in consts:
                value = torch.from_numpy(np.array(self.graph.constants[src.tensor]))
                value = value[relative(src.box, full_box(value.shape))]
                consts[slot] = to_processor(value.contiguous(), self.processors[proc])
            return Fetch(slot)
        parts = []
        for piece in src.pieces:
            origin = self._piece_box(piece, proc)
            inter = intersect(src.box, origin)
            if not is_empty(inter):
                parts.append((piece, origin, relative(inter, origin), relative(inter, src.box)))
        if len(parts) == 1:
            piece, origin, src_slices, _ = parts[0]
            return Fetch(self._slot(piece)) if origin == src.box else Fetch(self._slot(piece), src_slices)
        return Assemble(tuple((self._slot(p), a, b) for p, _, a, b in parts), box_shape(src.box),
                        self.processors[proc].channels_last)

    def _template(self, consts: dict[int, torch.Tensor]) -> list[torch.Tensor | None]:
        template: list[torch.Tensor | None] = [None] * len(self.slots)
        for slot, value in consts.items():
            template[slot] = value
        return template

    def _inputs_read(self, proc: int) -> list[int]:
        """The graph inputs processor ``proc`` reads (by index)."""
        program = self.schedule.programs[proc]
        names = {src.tensor for st in program.steps if isinstance(st, RunStep) for src in st.inputs}
        names |= {src.tensor for src in program.outputs}
        return [i for i, s in enumerate(self.graph.inputs) if s.name in names]


def track_name(proc: int, p: Processor) -> str:
    """The trace track of processor ``proc``: device, type, layout, threads or SMs."""
    layout = "channels-last" if p.channels_last else "contiguous"
    if p.kind is ProcessorKind.CPU:
        extra = f"{p.threads or torch.get_num_threads()} threads" + (f" on cores {list(p.cores)}" if p.cores else "")
    elif p.kind is ProcessorKind.CUDA:
        extra = f"{p.sm_limit} SMs" if p.sm_limit else "all SMs"
    else:
        extra = p.kind.value
    return f"{proc}: {p.label} {p.dtype.value} {layout}, {extra}"


def _usable_cores() -> set[int]:
    return os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else set(range(os.cpu_count() or 1))


def pair_defaults(processors: tuple[Processor, Processor]) -> tuple[Processor, Processor]:
    """The processors as a session runs them: a CPU beside a CUDA GPU with no thread
    count given runs all usable cores but one (the driver thread keeps one)."""
    p0, p1 = processors
    if p1.kind is ProcessorKind.CUDA and p0.kind is ProcessorKind.CPU and p0.threads is None and p0.cores is None:
        p0 = dataclasses.replace(p0, threads=max(1, len(_usable_cores()) - 1))
    return p0, p1


__all__ = ["Prepared", "track_name", "pair_defaults"]
