"""Compile a plan into one program per processor: which region of every node each
processor computes, where each input comes from, and which regions cross between
processors. Pure arithmetic on shapes; no device is touched.

Each processor runs its program in the graph's topological order. After a node, the
producer sends every region the other processor's later steps need but do not compute
themselves; the receiver picks it up right before its first use. Because both programs
follow the same order, a receive always waits for a send that comes earlier in the other
program, so the pair cannot deadlock.

Inside a chain, each processor computes an enlarged region of every node but the last
(the halo its next node reads), so nothing crosses within the chain.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from ..ir.graph import Graph, Node
from ..ir.regions import (
    Box,
    Dim,
    contains,
    full_box,
    hull,
    intersect,
    is_empty,
    split_point,
    with_axis,
)
from ..ops import family
from ..plan.types import Plan, verify_plan

EMPTY = None  # no region: the processor computes nothing of this tensor


@dataclass
class InputSource:
    """Where a step's input comes from on its processor.

    ``pieces`` lists the local pieces to read: ("own" | "recv" | "const", tensor name).
    One piece: a slice of it (``slices``) is the input, no copy. Two pieces: the input
    is assembled into a new buffer of ``box``'s shape.
    """

    tensor: str
    box: Box
    pieces: list[tuple[str, str]]


@dataclass
class RunStep:
    node: Node
    box: Box  # region of the (single) output this processor computes
    inputs: list[InputSource]


@dataclass
class SendStep:
    tensor: str
    box: Box
    channel: int


@dataclass
class RecvStep:
    tensor: str
    box: Box
    channel: int


Step = RunStep | SendStep | RecvStep


@dataclass
class Program:
    steps: list[Step] = field(default_factory=list)
    frees: list[list[tuple[str, str]]] = field(default_factory=list)  # pieces dropped after each step
    outputs: list[InputSource] = field(default_factory=list)  # processor 0 only


@dataclass
class Schedule:
    graph: Graph
    plan: Plan
    boxes: dict[str, tuple[Box, Box]]  # node -> region computed on processor 0, 1
    held: tuple[dict[str, Box], dict[str, Box]]  # tensor -> region each processor computes
    programs: tuple[Program, Program]
    channels: list[tuple[int, str, Box]]  # channel -> (sender, tensor, region)


CHANNEL_ALIGN = 8  # fp16/bf16 matrix units want channel counts in multiples of 8


def split_alignment(required: int, dim: Dim, size: int) -> int:
    """The step of split points along an axis of ``size``: the operator's own
    requirement, and for output channels a multiple of ``CHANNEL_ALIGN`` where the axis
    allows it (half-precision convolution kernels are built for such channel counts; the
    same rule for every node keeps a chain's split points together)."""
    if dim is Dim.OC and size % CHANNEL_ALIGN == 0:
        step = required * CHANNEL_ALIGN // math.gcd(required, CHANNEL_ALIGN)
        if size % step == 0:
            return step
    return required


def own_box(graph: Graph, node: Node, plan: Plan, proc: int) -> Box:
    """The part of ``node``'s output that ``proc`` owns under the plan."""
    out = graph.spec(node.outputs[0])
    p = plan.placements[node.name]
    if not p.is_split:
        return full_box(out.shape) if p.processor == proc else EMPTY
    axis, align = split_axis(graph, node, p.dim)
    return share_boxes(full_box(out.shape), axis, align, p.rho)[proc]


def split_axis(graph: Graph, node: Node, dim: Dim) -> tuple[int, int]:
    """The output axis of ``node`` that ``dim`` cuts, and the step of its split points."""
    fam, out = family(node.op), graph.spec(node.outputs[0])
    ins = [graph.spec(i) for i in node.inputs]
    axis = fam.split_axes(node, ins, out)[dim]
    return axis, split_alignment(fam.alignment(node, ins, dim), dim, out.shape[axis])


def share_boxes(full: Box, axis: int, align: int, rho: float) -> tuple[Box | None, Box | None]:
    """The regions of an output ``full`` that processor 0 and processor 1 own when it is
    cut along ``axis`` at share ``rho`` (split points on multiples of ``align``)."""
    size = full[axis][1]
    point = split_point(size, rho, align)
    return (with_axis(full, axis, 0, point) if point > 0 else EMPTY,
            with_axis(full, axis, point, size) if point < size else EMPTY)


def _input_boxes(graph: Graph, node: Node, box: Box) -> list[Box]:
    if is_empty(box):
        return [EMPTY] * len(node.inputs)
    out = graph.spec(node.outputs[0])
    if box == full_box(out.shape):
        return [full_box(graph.spec(i).shape) for i in node.inputs]
    return family(node.op).input_boxes(node, [graph.spec(i) for i in node.inputs], out, box)


def compute_boxes(graph: Graph, plan: Plan) -> dict[str, tuple[Box, Box]]:
    """Region of each node's output computed on each processor: its own part, enlarged
    inside chains by what the next node of the chain reads on that processor."""
    next_in_chain = {a: b for chain in plan.chains for a, b in zip(chain, chain[1:])}
    boxes: dict[str, tuple[Box, Box]] = {}
    for node in reversed(graph.nodes):
        regions = []
        for proc in (0, 1):
            box = own_box(graph, node, plan, proc)
            nxt = next_in_chain.get(node.name)
            if nxt is not None:
                consumer = graph.node(nxt)
                needs = _input_boxes(graph, consumer, boxes[nxt][proc])
                for name, need in zip(consumer.inputs, needs):
                    if name == node.outputs[0]:
                        box = hull(box, need)
            regions.append(box)
        boxes[node.name] = (regions[0], regions[1])
    return boxes


def _trim(need: Box, have: Box) -> Box:
    """``need`` minus ``have`` when that is a box (they differ along one axis only)."""
    if is_empty(have):
        return need
    diff = [i for i, (a, b) in enumerate(zip(need, have)) if a != b]
    if len(diff) != 1:
        return need
    ax = diff[0]
    (n0, n1), (h0, h1) = need[ax], have[ax]
    if h0 <= n0 < h1 < n1:
        return with_axis(need, ax, h1, n1)
    if n0 < h0 < n1 <= h1:
        return with_axis(need, ax, n0, h0)
    return need


def build_schedule(graph: Graph, plan: Plan) -> Schedule:
    verify_plan(plan, graph)
    boxes = compute_boxes(graph, plan)
    held: list[dict[str, Box]] = [{}, {}]  # tensor -> region computed on each processor
    for proc in (0, 1):
        for spec in graph.inputs:  # the session hands both processors the whole input
            held[proc][spec.name] = full_box(spec.shape)
        for node in graph.nodes:
            for out in node.outputs:  # multi-output nodes are never split: whole or nothing
                held[proc][out] = boxes[node.name][proc] if len(node.outputs) == 1 else (
                    full_box(graph.spec(out).shape) if boxes[node.name][proc] is not None else EMPTY)

    # What each processor reads of every tensor (processor 0, the host, reads the outputs).
    reads: list[dict[str, Box]] = [{}, {}]
    for proc in (0, 1):
        for node in graph.nodes:
            for name, need in zip(node.inputs, _input_boxes(graph, node, boxes[node.name][proc])):
                if not graph.is_constant(name) and not is_empty(need):
                    reads[proc][name] = hull(reads[proc].get(name, EMPTY), need)
    for out in graph.outputs:
        reads[0][out] = full_box(graph.spec(out).shape)

    channels: list[tuple[int, str, Box]] = []
    received: list[dict[str, tuple[Box, int]]] = [{}, {}]
    for proc in (0, 1):
        for name, need in reads[proc].items():
            if not contains(held[proc][name], need):
                region = intersect(_trim(need, held[proc][name]), held[1 - proc][name])
                received[proc][name] = (region, len(channels))
                channels.append((1 - proc, name, region))

    programs = (Program(), Program())
    for node in graph.nodes:
        for proc in (0, 1):
            box = boxes[node.name][proc]
            if is_empty(box):
                continue
            prog = programs[proc]
            sources = []
            for name, need in zip(node.inputs, _input_boxes(graph, node, box)):
                if graph.is_constant(name):
                    sources.append(InputSource(name, need, [("const", name)]))
                    continue
                _receive_once(prog, name, received[proc])
                sources.append(_source(name, need, held[proc][name], received[proc].get(name)))
            prog.steps.append(RunStep(node, box, sources))
            prog.steps += [SendStep(t, region, ch) for ch, (sender, t, region) in enumerate(channels)
                           if sender == proc and t in node.outputs]
    for out in graph.outputs:
        _receive_once(programs[0], out, received[0])
        programs[0].outputs.append(_source(out, full_box(graph.spec(out).shape), held[0][out], received[0].get(out)))
    for proc in (0, 1):
        programs[proc].frees = _frees(programs[proc], graph, proc)
    return Schedule(graph, plan, boxes, (held[0], held[1]), programs, channels)


def _receive_once(prog: Program, name: str, received: dict[str, tuple[Box, int]]) -> None:
    """Receive ``name``'s region from the other processor before its first local use."""
    if name in received and not any(isinstance(s, RecvStep) and s.tensor == name for s in prog.steps):
        region, ch = received[name]
        prog.steps.append(RecvStep(name, region, ch))


def _source(name: str, need: Box, own: Box, recv: tuple[Box, int] | None) -> InputSource:
    if contains(own, need):
        return InputSource(name, need, [("own", name)])
    if recv is not None and contains(recv[0], need):
        return InputSource(name, need, [("recv", name)])
    pieces = ([("own", name)] if not is_empty(intersect(own, need)) else []) + [("recv", name)]
    return InputSource(name, need, pieces)


def _frees(prog: Program, graph: Graph, proc: int) -> list[list[tuple[str, str]]]:
    """After which step each local piece is read for the last time."""
    last: dict[tuple[str, str], int] = {}
    keep = {("own", o) for o in graph.outputs} | {("recv", o) for o in graph.outputs} if proc == 0 else set()
    for i, step in enumerate(prog.steps):
        if isinstance(step, RunStep):
            for src in step.inputs:
                for piece in src.pieces:
                    last[piece] = i
        elif isinstance(step, SendStep):
            last[("own", step.tensor)] = i
    frees: list[list[tuple[str, str]]] = [[] for _ in prog.steps]
    for piece, i in last.items():
        if piece[0] != "const" and piece not in keep:
            frees[i].append(piece)
    return frees


