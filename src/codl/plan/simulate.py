"""A plan's predicted latency: the two programs the executor would run
(:func:`codl.runtime.schedule.build_schedule`) played against the cost model.

Each processor runs its steps in order. A run costs the node's share on that processor
(its computed region, halos of chains included); a send costs the sender its part of the
exchange and the data arrives after the link's time; a receive waits for that arrival.
The graph input reaches processor 1 over the link from processor 0 before its first
step; outputs are read on processor 0. The result is the later of the two processors'
end times, the same quantity a session call measures.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from ..ir.graph import Graph, Node
from ..ir.regions import box_shape, is_empty
from ..ops import family
from ..runtime.schedule import RecvStep, RunStep, SendStep, build_schedule
from .cost import CostModel
from .types import Placement, Plan


@dataclass
class Prediction:
    """Predicted ms of one call, per processor busy time, and bytes exchanged."""

    total_ms: float
    busy_ms: tuple[float, float]
    end_ms: tuple[float, float]
    exchanges: int
    exchanged_bytes: int
    node_ms: dict[str, tuple[float, float]] = field(default_factory=dict)


def _split_axis(graph: Graph, node: Node, p: Placement) -> tuple[int, int] | None:
    """The output axis ``p`` splits ``node`` on and its size; None when the node runs whole."""
    if not p.is_split or len(node.outputs) != 1:
        return None
    out = graph.spec(node.outputs[0])
    axis = family(node.op).split_axes(node, [graph.spec(i) for i in node.inputs], out)[p.dim]
    return axis, out.shape[axis]


def predict_plan(graph: Graph, plan: Plan, cost: CostModel) -> Prediction:
    sched = build_schedule(graph, plan)
    arrival: dict[int, float] = {}
    sizes = {ch: math.prod(box_shape(box)) * cost.itemsize for ch, (_, _, box) in enumerate(sched.channels)}
    clock = [0.0, 0.0]
    busy = [0.0, 0.0]
    node_ms: dict[str, list[float]] = {}
    programs = [p.steps for p in sched.programs]
    inputs = {x.name for x in graph.inputs}
    axes: dict[str, tuple[int, int] | None] = {}  # node -> _split_axis
    if any(isinstance(s, RunStep) and any(i in inputs for i in s.node.inputs) for s in programs[1]):
        clock[1] = cost.links[0].ms(sum(s.numel for s in graph.inputs) * cost.itemsize)
    pos = [0, 0]
    while pos[0] < len(programs[0]) or pos[1] < len(programs[1]):
        moved = False
        for proc in (0, 1):
            steps = programs[proc]
            while pos[proc] < len(steps):
                step = steps[pos[proc]]
                if isinstance(step, RecvStep):
                    if step.channel not in arrival:
                        break
                    clock[proc] = max(clock[proc], arrival[step.channel])
                elif isinstance(step, SendStep):
                    link = cost.links[proc]
                    t = link.sender_ms(sizes[step.channel])
                    arrival[step.channel] = clock[proc] + link.ms(sizes[step.channel])
                    clock[proc] += t
                    busy[proc] += t
                elif isinstance(step, RunStep) and not is_empty(step.box):
                    name = step.node.name
                    p = plan.placements[name]
                    if name not in axes:
                        axes[name] = _split_axis(graph, step.node, p)
                    split = axes[name]
                    # the fraction of the split axis this processor computes (halos included)
                    share = 1.0 if split is None else (step.box[split[0]][1] - step.box[split[0]][0]) / split[1]
                    t = cost.op_ms(name, proc, p.dim if p.is_split else None, share)
                    t += sum(cost.assemble_ms(proc, math.prod(box_shape(src.box)) * cost.itemsize)
                             for src in step.inputs if len(src.pieces) > 1)
                    clock[proc] += t
                    busy[proc] += t
                    node_ms.setdefault(step.node.name, [0.0, 0.0])[proc] += t
                pos[proc] += 1
                moved = True
        if not moved:
            raise RuntimeError("schedule deadlocks in simulation (a receive before its send)")
    # Outputs on processor 0 wait for their channels (already in its program as receives).
    return Prediction(max(clock), (busy[0], busy[1]), (clock[0], clock[1]), len(sched.channels), sum(sizes.values()),
                      {k: (v[0], v[1]) for k, v in node_ms.items()})


def predict_single(graph: Graph, cost: CostModel, proc: int) -> Prediction:
    """:func:`predict_plan` of every node whole on ``proc``, without building a schedule:
    the nodes in order, the input first sent over to processor 1, outputs sent back."""
    if proc == 0:
        total = sum(cost.op_ms(n.name, 0, None, 1.0) for n in graph.nodes)
        return Prediction(total, (total, 0.0), (total, 0.0), 0, 0)
    inputs = {s.name for s in graph.inputs}
    clock = cost.links[0].ms(sum(s.numel for s in graph.inputs) * cost.itemsize) if any(
        i in inputs for n in graph.nodes for i in n.inputs) else 0.0
    busy, arrivals, nbytes, outs = 0.0, [0.0], 0, set(graph.outputs)
    for node in graph.nodes:
        t = cost.op_ms(node.name, 1, None, 1.0)
        clock, busy = clock + t, busy + t
        for out in node.outputs:
            if out in outs:
                b = graph.spec(out).numel * cost.itemsize
                nbytes += b
                arrivals.append(clock + cost.links[1].ms(b))
                clock += cost.links[1].sender_ms(b)
                busy += cost.links[1].sender_ms(b)
    return Prediction(max(clock, *arrivals), (0.0, busy), (max(arrivals), clock), len(arrivals) - 1, nbytes)


def placement_summary(graph: Graph, plan: Plan, itemsize: int = 4) -> dict:
    """Ops whole on each processor, split ops by dimension, chains, exchanges."""
    sched = build_schedule(graph, plan)
    whole = [0, 0]
    split: dict[str, int] = {}
    for p in plan.placements.values():
        if p.is_split:
            split[p.dim.value] = split.get(p.dim.value, 0) + 1
        else:
            whole[p.processor] += 1
    nbytes = sum(math.prod(box_shape(box)) for _, _, box in sched.channels) * itemsize
    return {"ops": len(graph.nodes), "whole_on_0": whole[0], "whole_on_1": whole[1], "split_by_dim": split,
            "chains": len(plan.chains), "chained_ops": sum(len(c) for c in plan.chains),
            "exchanges": len(sched.channels), "exchanged_mb": nbytes / 1e6}


def format_summary(s: dict, names: tuple[str, str]) -> str:
    split = ", ".join(f"{n} by {'output channels' if d == 'oc' else 'rows'}" for d, n in sorted(s["split_by_dim"].items()))
    return (f"{s['ops']} ops: {s['whole_on_0']} on {names[0]}, {s['whole_on_1']} on {names[1]}, "
            f"{sum(s['split_by_dim'].values())} split ({split or 'none'}); {s['chains']} chains "
            f"({s['chained_ops']} ops); {s['exchanges']} exchanges ({s['exchanged_mb']:.2f} MB a call)")
