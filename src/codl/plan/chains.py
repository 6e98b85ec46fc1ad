"""Algorithm 1 of CoDL over row splits: runs of nodes that each read only the previous
one's output are chained (each processor keeps its rows through the chain, halos grown
backwards, no exchange inside), where the additive cost (:mod:`codl.plan.problem`) of
the chained segment beats the nodes split one by one.
"""

from __future__ import annotations

from ..ir.graph import Graph, Node
from ..ir.regions import Box, Dim, full_box, hull, is_empty
from .problem import Problem
from .random import split_dims
from .types import Placement, Plan

MAX_CHAIN = 6
CHAIN_DELTAS = (-0.1, 0.0, 0.1)  # on the measured grid


def _chain_segments(graph: Graph) -> list[list[str]]:
    """Runs of nodes that can form a row chain: each reads the previous node's output,
    which nobody else reads, and all split on rows."""
    consumers = graph.consumers()
    outs = set(graph.outputs)
    runs: list[list[str]] = []
    for node in graph.nodes:
        if Dim.H not in split_dims(graph, node.name):
            continue
        prev = graph.node(runs[-1][-1]) if runs else None
        if prev is not None and prev.outputs[0] in node.inputs:
            users = consumers.get(prev.outputs[0], [])
            if len(users) == 1 and prev.outputs[0] not in outs:
                runs[-1].append(node.name)
                continue
        runs.append([node.name])
    return [r for r in runs if len(r) > 1]


def chain_search(problem: Problem, choice: dict[str, int], max_len: int = MAX_CHAIN) -> Plan:
    """Algorithm 1 over row splits: for each split head, chains of 2..max_len nodes at
    the head's share +- CHAIN_DELTAS, kept where the additive cost (nodes as max of each
    processor's sum, halos included, plus the edges in and out) beats the current one."""
    graph = problem.graph
    plan = problem.plan(choice)
    chained: set[str] = set()
    regions: dict[tuple, tuple] = {}  # _chained_node's memo for this search
    for run in _chain_segments(graph):
        i = 0
        while i < len(run) - 1:
            head = run[i]
            hp = plan.placements[head]
            if head in chained or not (hp.is_split and hp.dim is Dim.H):
                i += 1
                continue
            best: tuple[float, int, float] | None = None
            for j in range(i + 2, min(len(run), i + max_len) + 1):
                seg = run[i:j]
                now = _segment_now(problem, choice, seg)
                for d in CHAIN_DELTAS:
                    rho = round(min(0.95, max(0.05, hp.rho + d)), 3)
                    c = _segment_chained(problem, choice, seg, rho, regions)
                    if c < now - 1e-9 and (best is None or now - c > best[0]):
                        best = (now - c, j, rho)
            if best is None:
                i += 1
                continue
            _, j, rho = best
            seg = run[i:j]
            for n in seg:
                plan.placements[n] = Placement(Dim.H, rho)
            plan.chains.append(seg)
            chained.update(seg)
            i = j
    return plan


def _segment_now(problem: Problem, choice: dict[str, int], seg: list[str]) -> float:
    """Additive cost of the segment's nodes and every edge touching them, as chosen."""
    t = sum(float(problem.node_cost[n][choice[n]]) for n in seg)
    seen: set[int] = set()
    for n in seg:
        for e in problem.in_edges[n] + problem.out_edges[n]:
            if e not in seen:
                seen.add(e)
                u, v, m = problem.edges[e]
                t += float(m[choice[u], choice[v] if v is not None else 0])
    return t


def _chained_node(problem: Problem, node: Node, placement: Placement, nxt: Node | None,
                  after: tuple[Box | None, Box | None] | None) -> tuple[tuple[Box | None, Box | None], tuple[float, float]]:
    """Each processor's region of ``node`` in a chain (its own rows and what the next
    node ``nxt``, computing ``after``, reads of them: the halos) and its ms there."""
    own = problem.own(node, placement)
    if nxt is not None and after is not None:
        own = (hull(own[0], problem.reads(nxt, after[0], node.outputs[0])),
               hull(own[1], problem.reads(nxt, after[1], node.outputs[0])))
    ms = [0.0, 0.0]
    for q in (0, 1):
        share = 0.0 if is_empty(own[q]) else problem.share(node, placement, own[q])
        ms[q] = problem.share_ms(node.name, q, Dim.H, share) if share > 0 else 0.0
    return own, (ms[0], ms[1])


def _segment_chained(problem: Problem, choice: dict[str, int], seg: list[str], rho: float,
                     memo: dict[tuple, tuple]) -> float:
    nodes = problem.nodes
    placement = Placement(Dim.H, rho)
    # backwards from the tail, as a node's region depends on the next one's (the same
    # node, share and next region recur across segments: memoised)
    boxes: dict[str, tuple[Box | None, Box | None]] = {}
    node_ms: dict[str, tuple[float, float]] = {}
    after = None
    for k in range(len(seg) - 1, -1, -1):
        key = (seg[k], rho, after)
        got = memo.get(key)
        if got is None:
            nxt = nodes[seg[k + 1]] if k + 1 < len(seg) else None
            got = memo[key] = _chained_node(problem, nodes[seg[k]], placement, nxt, after)
        after = boxes[seg[k]] = got[0]
        node_ms[seg[k]] = got[1]
    sums = [0.0, 0.0]
    for n in seg:
        for q in (0, 1):
            sums[q] += node_ms[n][q]
    t = max(sums)
    # edges into the segment from outside, with the enlarged needs; edges out of the tail
    inside = set(seg)
    for n in seg:
        node = nodes[n]
        for e in problem.in_edges[n]:
            u, _, _ = problem.edges[e]
            if u in inside:
                continue
            tensor = next(o for o in nodes[u].outputs if o in node.inputs)
            held = problem.held[tensor][choice[u]]
            t += problem.edge_ms(held, (problem.reads(node, boxes[n][0], tensor), problem.reads(node, boxes[n][1], tensor)))
    tail = nodes[seg[-1]]
    own = problem.own(tail, placement)
    for e in problem.out_edges[seg[-1]]:
        _, v, _ = problem.edges[e]
        if v is None:
            need = (full_box(problem.graph.spec(tail.outputs[0]).shape), None)
        else:
            vown = problem.own(nodes[v], problem.cands[v][choice[v]])
            need = (problem.reads(nodes[v], vown[0], tail.outputs[0]), problem.reads(nodes[v], vown[1], tail.outputs[0]))
        t += problem.edge_ms(own, need)
    return t
