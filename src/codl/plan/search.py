"""The planners: a Graph, its two processors' cost model and a strategy -> a Plan.

All strategies but ``oracle`` search one additive cost (CoDL's Eq. 2, per node): a node
whole on processor p costs its time there; a split node costs ``max(T_0, T_1)`` of its
two shares; an edge between a producer and a consumer costs the exchange of what each
processor needs of the tensor and does not compute itself (``T_trans + T_sync``, the
slower direction, from the cost model's links). Graph outputs are read on processor 0.

- ``cpu`` / ``gpu``: every node whole on processor 0 / 1.
- ``layer-switch`` (seed 002): every node whole on one processor, switching costs
  included, by dynamic programming over the graph's producer tree. Exact when every
  tensor has one consumer (chains, and joins of such); with fan-out (skip connections)
  the tree solution is then improved node by node until no single node's move lowers
  the cost (a local optimum, never worse than either processor alone).
- ``mulayer``: the uLayer-like baseline: every node that splits on output channels is
  split there at one ratio from a FLOPs model fitted on the cost model's times
  (FLOPs/ms per processor over the convs and linears); the rest whole on the faster side.
- ``codl``: the same dynamic programming as layer-switch over every node's whole and
  split placements (each supported dimension at shares 0.1-0.9), then Algorithm 1's chain
  search over row splits (chains of up to ``MAX_CHAIN`` nodes around each head's share,
  kept where the additive cost falls).

Every plan goes through :func:`guard`: a plan predicted slower than the best single
processor is replaced by it (``PlanResult.note`` says so and by how much).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from ..errors import CodlError
from ..ir.graph import Graph, Node, OpKind
from ..ir.regions import Box, Dim, full_box, hull, is_empty
from ..ops import family
from ..runtime.schedule import share_boxes, split_alignment
from .cost import GRID, CostModel
from .random import split_dims
from .simulate import Prediction, predict_plan, predict_single
from .types import Placement, Plan

STRATEGIES = ("cpu", "gpu", "layer-switch", "mulayer", "codl", "oracle")
SHARES = GRID
MAX_CHAIN = 6
CHAIN_DELTAS = (-0.1, 0.0, 0.1)  # on the measured grid
HEAVY = {OpKind.CONV, OpKind.CONV_TRANSPOSE, OpKind.LINEAR, OpKind.MATMUL}


@dataclass
class PlanResult:
    """A plan with its predicted latency, the single-processor predictions and the guard's note."""

    plan: Plan
    strategy: str
    predicted: Prediction
    single_ms: tuple[float, float]
    note: str = ""
    additive_ms: float = math.nan
    extra: dict = field(default_factory=dict)


def _stacked(boxes: list[Box | None], rank: int) -> tuple[np.ndarray, np.ndarray]:
    """Start and end arrays [len(boxes), rank] (zeros for no region)."""
    a = np.array([[b for pair in box for b in pair] if not is_empty(box) else [0] * (2 * rank) for box in boxes],
                 dtype=np.float64).reshape(len(boxes), rank, 2)
    return a[:, :, 0], a[:, :, 1]


class Problem:
    """Candidates, node costs and edge cost matrices of the additive model."""

    def __init__(self, graph: Graph, cost: CostModel, cands: dict[str, list[Placement]],
                 keep: int | None = None) -> None:
        """``keep``: per node and split dimension, only the ``keep`` shares whose own
        cost is lowest stay candidates (fewer candidates, a faster search)."""
        cost.check(graph)
        self.graph, self.cost, self.cands = graph, cost, dict(cands)
        self._owns: dict[tuple[str, bool, float], tuple[Box | None, Box | None]] = {}
        self._fulls: dict[str, Box] = {}
        self._sigs: dict[str, tuple] = {}  # node -> family, input specs, output spec, boxes
        self._needs: dict[tuple[str, Box], list[Box]] = {}
        self._axes: dict[tuple[str, bool], tuple[int, int]] = {}
        self.order = [n.name for n in graph.nodes]
        consts_inputs = {s.name for s in graph.inputs} | set(graph.constants)
        producers = graph.producers()
        # own boxes per candidate per processor for every output tensor
        self.held: dict[str, list[tuple[Box | None, Box | None]]] = {}
        self.node_cost: dict[str, np.ndarray] = {}
        owns: dict[str, list[tuple[Box | None, Box | None]]] = {}
        for node in graph.nodes:
            boxes = [self._own(node, p) for p in self.cands[node.name]]
            costs = [self._node_ms(node, p, b) for p, b in zip(self.cands[node.name], boxes)]
            if keep is not None:
                kept = _best_per_dim(self.cands[node.name], costs, keep)
                self.cands[node.name] = [self.cands[node.name][k] for k in kept]
                boxes, costs = [boxes[k] for k in kept], [costs[k] for k in kept]
            self.node_cost[node.name] = np.array(costs)
            owns[node.name] = boxes
            for out in node.outputs:
                if len(node.outputs) == 1:
                    self.held[out] = boxes
                else:
                    full = full_box(graph.spec(out).shape)
                    self.held[out] = [(full if p.processor == 0 else None, full if p.processor == 1 else None)
                                      for p in self.cands[node.name]]
        # edges: (producer, consumer or None for the host, matrix [Kp, Kc])
        self.edges: list[tuple[str, str | None, np.ndarray]] = []
        for node in graph.nodes:
            needs: dict[str, list[tuple[Box | None, Box | None]]] = {}
            for k, own in enumerate(owns[node.name]):
                per_proc = [self.input_boxes(node, own[q]) for q in (0, 1)]
                for j, name in enumerate(node.inputs):
                    if name in consts_inputs:
                        continue
                    slot = needs.setdefault(name, [(None, None)] * len(self.cands[node.name]))
                    slot[k] = (hull(slot[k][0], per_proc[0][j]), hull(slot[k][1], per_proc[1][j]))
            for name, need in needs.items():
                u = producers[name].name
                self.edges.append((u, node.name, self._edge_matrix(self.held[name], need)))
        for out in graph.outputs:
            if out in consts_inputs:
                continue
            need = [(full_box(graph.spec(out).shape), None)]
            self.edges.append((producers[out].name, None, self._edge_matrix(self.held[out], need)))
        self.in_edges: dict[str, list[int]] = {n: [] for n in self.order}
        self.out_edges: dict[str, list[int]] = {n: [] for n in self.order}
        for e, (u, v, _) in enumerate(self.edges):
            self.out_edges[u].append(e)
            if v is not None:
                self.in_edges[v].append(e)

    def _own(self, node: Node, p: Placement) -> tuple[Box | None, Box | None]:
        key = (node.name, p.dim is Dim.H, p.rho)  # (an enum's hash is slow in Python)
        own = self._owns.get(key)
        if own is None:
            full = self._fulls.get(node.name)
            if full is None:
                full = self._fulls[node.name] = full_box(self.graph.spec(node.outputs[0]).shape)
            if len(node.outputs) != 1 or not 0.0 < p.rho < 1.0:
                own = (full, None) if p.rho < 1.0 else (None, full)
            else:
                axis, align = self._axis(node, p.dim)
                own = share_boxes(full, axis, align, p.rho)
            self._owns[key] = own
        return own

    def _axis(self, node: Node, dim: Dim) -> tuple[int, int]:
        """The output axis ``dim`` means for ``node`` and the step of its split points
        (as :func:`codl.runtime.schedule.own_box` computes them)."""
        key = (node.name, dim is Dim.H)  # (an enum's hash is slow in Python)
        if key not in self._axes:
            ins = [self.graph.spec(i) for i in node.inputs]
            out = self.graph.spec(node.outputs[0])
            fam = family(node.op)
            axis = fam.split_axes(node, ins, out)[dim]
            self._axes[key] = (axis, split_alignment(fam.alignment(node, ins, dim), dim, out.shape[axis]))
        return self._axes[key]

    def input_boxes(self, node: Node, box: Box | None) -> list[Box | None]:
        """What ``node`` reads of each input to compute ``box`` of its output (memoised)."""
        if box is None:
            return [None] * len(node.inputs)
        key = (node.name, box)
        got = self._needs.get(key)
        if got is None:
            sig = self._sigs.get(node.name)
            if sig is None:
                ins = [self.graph.spec(i) for i in node.inputs]
                out = self.graph.spec(node.outputs[0])
                sig = self._sigs[node.name] = (family(node.op), ins, out, full_box(out.shape),
                                               [full_box(t.shape) for t in ins])
            fam, ins, out, full, whole_inputs = sig
            got = self._needs[key] = whole_inputs if box == full else fam.input_boxes(node, ins, out, box)
        return got

    def _share(self, node: Node, p: Placement, box: Box | None) -> float:
        if box is None:
            return 0.0
        axis = self._axis(node, p.dim)[0]
        return (box[axis][1] - box[axis][0]) / (self.graph.spec(node.outputs[0]).shape[axis])

    def _node_ms(self, node: Node, p: Placement, own: tuple[Box | None, Box | None]) -> float:
        if not p.is_split:
            return self.cost.op_ms(node.name, p.processor, None, 1.0)
        return max(self.cost.op_ms(node.name, q, p.dim, self._share(node, p, own[q])) for q in (0, 1))

    def _edge_matrix(self, held: list[tuple[Box | None, Box | None]], need: list[tuple[Box | None, Box | None]]) -> np.ndarray:
        """ms of the slower direction of what each processor needs and does not hold."""
        rank = next((len(b) for pair in held + need for b in pair if b is not None), 1)
        out = np.zeros((len(held), len(need)))
        for q in (0, 1):
            hl, hh = _stacked([h[q] for h in held], rank)
            nl, nh = _stacked([n[q] for n in need], rank)
            need_vol = np.prod(nh - nl, axis=1)  # [Kc]
            inter = np.prod(np.clip(np.minimum(hh[:, None, :], nh[None]) - np.maximum(hl[:, None, :], nl[None]), 0, None),
                            axis=2)  # [Kp, Kc]
            missing = (need_vol[None, :] - inter) * self.cost.itemsize
            link = self.cost.links[1 - q]
            ms = np.where(missing > 0, link.fixed_ms + (link.ms_per_mb + link.sender_ms_per_mb) * missing / 1e6, 0.0)
            # an input partly held and partly received is assembled into one buffer first
            ms += np.where((missing > 0) & (inter > 0), self.cost.copy_ms_per_mb[q] * need_vol[None, :] * self.cost.itemsize / 1e6,
                           0.0)
            out = np.maximum(out, ms)
        return out

    def edge_ms(self, held: tuple[Box | None, Box | None], need: tuple[Box | None, Box | None]) -> float:
        """One entry of :meth:`_edge_matrix`, without numpy (for the chain search)."""
        worst = 0.0
        for q in (0, 1):
            n = need[q]
            if is_empty(n):
                continue
            need_vol = missing = math.prod(e - s for s, e in n)
            h = held[q]
            if not is_empty(h):
                missing -= math.prod(max(0, min(e1, e2) - max(s1, s2)) for (s1, e1), (s2, e2) in zip(h, n))
            if missing > 0:
                link = self.cost.links[1 - q]
                ms = link.fixed_ms + (link.ms_per_mb + link.sender_ms_per_mb) * missing * self.cost.itemsize / 1e6
                if missing < need_vol:
                    ms += self.cost.assemble_ms(q, need_vol * self.cost.itemsize)
                worst = max(worst, ms)
        return worst

    def total(self, choice: dict[str, int]) -> float:
        t = sum(float(self.node_cost[n][choice[n]]) for n in self.order)
        for u, v, m in self.edges:
            t += float(m[choice[u], choice[v] if v is not None else 0])
        return t

    def local(self, choice: dict[str, int], n: str) -> np.ndarray:
        """The cost terms touching node ``n`` for each of its candidates, others fixed."""
        c = self.node_cost[n].copy()
        for e in self.in_edges[n]:
            u, _, m = self.edges[e]
            c += m[choice[u], :]
        for e in self.out_edges[n]:
            _, v, m = self.edges[e]
            c += m[:, choice[v] if v is not None else 0]
        return c

    def tree_dp(self) -> dict[str, int]:
        """Min over the producer tree: V[n] = cost(n) + sum over inputs of min over the
        producer's candidates of V[u] + edge. Exact when every tensor has one consumer."""
        value: dict[str, np.ndarray] = {}
        best_from: dict[int, np.ndarray] = {}
        for n in self.order:
            v = self.node_cost[n].copy()
            for e in self.in_edges[n]:
                u, _, m = self.edges[e]
                tot = value[u][:, None] + m
                best_from[e] = np.argmin(tot, axis=0)
                v += tot.min(axis=0)
            for e in self.out_edges[n]:
                if self.edges[e][1] is None:
                    v = v + self.edges[e][2][:, 0]
            value[n] = v
        choice: dict[str, int] = {}
        for n in reversed(self.order):  # consumers before producers
            choice.setdefault(n, int(np.argmin(value[n])))
            for e in self.in_edges[n]:
                choice.setdefault(self.edges[e][0], int(best_from[e][choice[n]]))
        return choice

    def descend(self, choice: dict[str, int], sweeps: int = 20) -> dict[str, int]:
        """Move single nodes to their best candidate while the total falls."""
        for _ in range(sweeps):
            improved = False
            for n in self.order:
                c = self.local(choice, n)
                k = int(np.argmin(c))
                if c[k] < c[choice[n]] - 1e-9:
                    choice[n], improved = k, True
            if not improved:
                break
        return choice

    def solve(self) -> dict[str, int]:
        """Tree DP, then single-node descent; the best of that and the single-processor plans."""
        starts = [self.tree_dp()]
        for proc in (0, 1):
            starts.append({n: self._whole_index(n, proc) for n in self.order})
        results = [self.descend(dict(s)) for s in starts]
        return min(results, key=self.total)

    def _whole_index(self, n: str, proc: int) -> int:
        for k, p in enumerate(self.cands[n]):
            if not p.is_split and p.processor == proc:
                return k
        raise CodlError(f"node {n!r} has no whole placement on processor {proc}")

    def plan(self, choice: dict[str, int]) -> Plan:
        return Plan(self.graph.name, {n: self.cands[n][choice[n]] for n in self.order})


def _best_per_dim(cands: list[Placement], costs: list[float], keep: int) -> list[int]:
    """Indices of the whole placements and of the ``keep`` cheapest shares of each dimension."""
    out = [k for k, p in enumerate(cands) if not p.is_split]
    for dim in {p.dim for p in cands if p.is_split}:
        split = sorted((costs[k], k) for k, p in enumerate(cands) if p.is_split and p.dim is dim)
        out += [k for _, k in split[:keep]]
    return sorted(out)


KEEP = 5  # shares per node and dimension the codl search keeps (the cheapest by the node's own cost)


def _whole() -> list[Placement]:
    return [Placement(Dim.OC, 0.0), Placement(Dim.OC, 1.0)]


def candidates(graph: Graph, cost: CostModel, split: bool, shares: tuple[float, ...] = SHARES) -> dict[str, list[Placement]]:
    out = {}
    for node in graph.nodes:
        cands = _whole()
        if split:
            dims = [d for d in split_dims(graph, node.name) if d in cost.dims(node.name)]
            cands += [Placement(d, r) for d in dims for r in shares]
        out[node.name] = cands
    return out


def flops_ratio(graph: Graph, cost: CostModel) -> float:
    """Processor 1's share from a FLOPs model fitted on the cost model: FLOPs per ms of
    each processor over the convs and linears."""
    from ..ir.summary import node_flops

    flops, ms = 0.0, [0.0, 0.0]
    for node in graph.nodes:
        if node.op in HEAVY:
            f = node_flops(graph, node)
            if f > 0:
                flops += f
                for q in (0, 1):
                    ms[q] += cost.op_ms(node.name, q, None, 1.0)
    if flops == 0 or min(ms) <= 0:
        return 0.5
    r0, r1 = flops / ms[0], flops / ms[1]
    return r1 / (r0 + r1)


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
                    c = _segment_chained(problem, plan, choice, seg, rho)
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


def _segment_chained(problem: Problem, plan: Plan, choice: dict[str, int], seg: list[str], rho: float) -> float:
    graph, cost = problem.graph, problem.cost
    placement = Placement(Dim.H, rho)
    boxes: dict[str, list[Box | None]] = {}
    for k in range(len(seg) - 1, -1, -1):
        node = graph.node(seg[k])
        regions = []
        for q in (0, 1):
            box = problem._own(node, placement)[q]
            if k + 1 < len(seg):
                nxt = graph.node(seg[k + 1])
                need = problem.input_boxes(nxt, boxes[seg[k + 1]][q])
                for name, b in zip(nxt.inputs, need):
                    if name == node.outputs[0]:
                        box = hull(box, b)
            regions.append(box)
        boxes[seg[k]] = regions
    sums = [0.0, 0.0]
    for n in seg:
        node = graph.node(n)
        for q in (0, 1):
            b = boxes[n][q]
            share = 0.0 if is_empty(b) else problem._share(node, Placement(Dim.H, rho), b)
            sums[q] += cost.op_ms(n, q, Dim.H, share) if share > 0 else 0.0
    t = max(sums)
    # edges into the segment from outside, with the enlarged needs; edges out of the tail
    inside = set(seg)
    for n in seg:
        node = graph.node(n)
        for e in problem.in_edges[n]:
            u, _, _ = problem.edges[e]
            if u in inside:
                continue
            tensor = next(o for o in graph.node(u).outputs if o in node.inputs)
            held = problem.held[tensor][choice[u]]
            need = [None, None]
            for q in (0, 1):
                for name, b in zip(node.inputs, problem.input_boxes(node, boxes[n][q])):
                    if name == tensor:
                        need[q] = hull(need[q], b)
            t += problem.edge_ms(held, (need[0], need[1]))
    tail = graph.node(seg[-1])
    own = problem._own(tail, placement)
    for e in problem.out_edges[seg[-1]]:
        _, v, _ = problem.edges[e]
        if v is None:
            need = (full_box(graph.spec(tail.outputs[0]).shape), None)
        else:
            vn = graph.node(v)
            vp = problem.cands[v][choice[v]]
            vown = problem._own(vn, vp)
            need_q = []
            for q in (0, 1):
                nb = None
                for name, b in zip(vn.inputs, problem.input_boxes(vn, vown[q])):
                    if name == tail.outputs[0]:
                        nb = hull(nb, b)
                need_q.append(nb)
            need = (need_q[0], need_q[1])
        t += problem.edge_ms(own, need)
    return t


def guard(graph: Graph, plan: Plan, cost: CostModel, strategy: str,
          measure: Callable[[Plan], float] | None = None, pred: Prediction | None = None) -> PlanResult:
    """Predict the plan (unless ``pred`` is its prediction) and both single-processor
    plans; keep the fastest. With ``measure`` (ms of a plan, measured) the choice is made
    on measured times."""
    singles = [Plan.uniform(graph, Placement(Dim.OC, float(p))) for p in (0, 1)]
    pred = pred or predict_plan(graph, plan, cost)
    single_pred = [predict_single(graph, cost, p) for p in (0, 1)]
    single_ms = (single_pred[0].total_ms, single_pred[1].total_ms)
    best = int(single_ms[1] < single_ms[0])
    if strategy in ("cpu", "gpu"):
        return PlanResult(plan, strategy, pred, single_ms)
    source = "predicted"
    mine, theirs = pred.total_ms, single_ms[best]
    if measure is not None:
        got = measure_all({"plan": plan, "single": singles[best]}, measure)
        mine, theirs, source = got["plan"], got["single"], "measured"
    if mine > theirs:
        name = ("processor 0", "processor 1")[best]
        note = (f"{strategy} plan {source} {mine:.3f} ms, slower than {name} alone ({theirs:.3f} ms) "
                f"by {mine / theirs:.2f}x: using {name} alone")
        return PlanResult(singles[best], strategy, single_pred[best], single_ms, note,
                          extra={"replaced_ms": mine, "replaced_source": source})
    return PlanResult(plan, strategy, pred, single_ms)


def make_plan(graph: Graph, cost: CostModel, strategy: str = "codl", guarded: bool = True,
              measure: Callable[[Plan], float] | None = None) -> PlanResult:
    """The plan of ``strategy`` for ``graph`` under ``cost`` (see the module docstring)."""
    if strategy not in STRATEGIES:
        raise CodlError(f"unknown strategy {strategy!r} (supported: {', '.join(STRATEGIES)})")
    cost.check(graph)
    additive, pred = math.nan, None
    if strategy in ("cpu", "gpu"):
        plan = Plan.uniform(graph, Placement(Dim.OC, float(strategy == "gpu")))
    elif strategy == "layer-switch":
        problem = Problem(graph, cost, candidates(graph, cost, split=False))
        choice = problem.solve()
        plan, additive = problem.plan(choice), problem.total(choice)
    elif strategy == "mulayer":
        rho = flops_ratio(graph, cost)
        cands = {}
        for node in graph.nodes:
            if Dim.OC in split_dims(graph, node.name):
                cands[node.name] = [Placement(Dim.OC, round(rho, 3))]
            else:
                fast = int(cost.op_ms(node.name, 1, None, 1.0) < cost.op_ms(node.name, 0, None, 1.0))
                cands[node.name] = [Placement(Dim.OC, float(fast))]
        problem = Problem(graph, cost, cands)
        choice = {n: 0 for n in problem.order}
        plan, additive = problem.plan(choice), problem.total(choice)
    elif strategy == "codl":
        problem = Problem(graph, cost, candidates(graph, cost, split=True), keep=KEEP)
        choice = problem.solve()
        plan, additive = chain_search(problem, choice), problem.total(choice)
        if plan.chains:  # keep the chains only where the schedule predicts them faster
            plain = problem.plan(choice)
            pred, pred_plain = predict_plan(graph, plan, cost), predict_plan(graph, plain, cost)
            if pred.total_ms > pred_plain.total_ms:
                plan, pred = plain, pred_plain
    else:
        raise CodlError("the oracle strategy measures plans: use codl.plan.search.oracle_plan")
    pred = pred or predict_plan(graph, plan, cost)  # (builds the schedule, which verifies the plan)
    result = guard(graph, plan, cost, strategy, measure, pred) if guarded else PlanResult(
        plan, strategy, pred, (math.nan, math.nan))
    result.additive_ms = additive
    return result




def oracle_plan(graph: Graph, cost: CostModel, measure: Callable[[Plan], float],
                progress: Callable[[str], None] | None = None) -> PlanResult:
    """The measured reference (seed 000's grid search, made affordable): the dynamic
    programming of ``codl`` over every node's measured costs at each dimension and share
    of the grid, its chain search, then the fastest *measured* (``measure``: ms of a
    plan) among that plan, that plan refined on the simulated schedule (:func:`refine`),
    the other strategies' plans, that plan with every share moved by +-0.05 and +-0.1,
    and each processor alone."""
    problem = Problem(graph, cost, candidates(graph, cost, split=True))
    choice = problem.solve()
    fine = chain_search(problem, choice)
    plans: dict[str, Plan] = {"oracle-dp": fine, "oracle-sim": refine(graph, fine, cost)}
    for s in ("layer-switch", "mulayer", "codl"):
        plans[s] = make_plan(graph, cost, s, guarded=False).plan
    for d in (-0.1, -0.05, 0.05, 0.1):
        shifted = Plan(graph.name, {k: Placement(v.dim, round(min(0.95, max(0.05, v.rho + d)), 3)) if v.is_split else v
                                    for k, v in fine.placements.items()}, [list(c) for c in fine.chains])
        plans[f"oracle-dp{d:+.2f}"] = shifted
    for p in (0, 1):
        plans[("cpu", "gpu")[p]] = Plan.uniform(graph, Placement(Dim.OC, float(p)))
    if progress:
        progress(f"oracle: measuring {len(plans)} plans, interleaved")
    measured = measure_all(plans, measure)
    best = min(measured, key=measured.get)
    singles = tuple(predict_plan(graph, plans[k], cost).total_ms for k in ("cpu", "gpu"))
    result = PlanResult(plans[best], "oracle", predict_plan(graph, plans[best], cost), singles,  # type: ignore[arg-type]
                        extra={"measured_ms": measured, "chosen": best})
    result.additive_ms = math.nan
    return result


def refine(graph: Graph, plan: Plan, cost: CostModel, max_evals: int = 400) -> Plan:
    """Single-node moves judged on the whole schedule (:func:`predict_plan`, which sees
    what the additive model does not: the processors overlapping across nodes): for each
    unchained node, heaviest first, its share +-0.1 on the same dimension, the other
    dimension at its share, and whole on either side; a move is kept when the predicted
    latency falls. At most ``max_evals`` predictions (about 2 ms each for 65 ops)."""
    best = Plan(plan.graph, dict(plan.placements), [list(c) for c in plan.chains], dict(plan.meta))
    best_ms = predict_plan(graph, best, cost).total_ms
    chained = {n for c in best.chains for n in c}
    order = sorted((n for n in graph.nodes if n.name not in chained),
                   key=lambda n: -max(cost.op_ms(n.name, 0, None, 1.0), cost.op_ms(n.name, 1, None, 1.0)))
    evals, improved = 0, True
    while improved and evals < max_evals:
        improved = False
        for node in order:
            p = best.placements[node.name]
            dims = cost.dims(node.name)
            moves = [Placement(Dim.OC, 0.0), Placement(Dim.OC, 1.0)]
            if p.is_split:
                moves += [Placement(p.dim, round(p.rho + d, 1)) for d in (-0.1, 0.1) if 0.05 < p.rho + d < 0.95]
                moves += [Placement(d, p.rho) for d in dims if d is not p.dim]
            else:
                moves += [Placement(d, r) for d in dims for r in (0.3, 0.5, 0.7)]
            for m in moves:
                if m == p or evals >= max_evals:
                    continue
                trial = Plan(best.graph, {**best.placements, node.name: m}, best.chains, best.meta)
                evals += 1
                ms = predict_plan(graph, trial, cost).total_ms
                if ms < best_ms - 1e-9:
                    best, best_ms, p, improved = trial, ms, m, True
    return best


def measure_all(plans: dict[str, Plan], measure: Callable) -> dict[str, float]:
    """ms of each plan; interleaved when ``measure`` can take them together."""
    many = getattr(measure, "many", None)
    return many(plans) if many is not None else {k: measure(p) for k, p in plans.items()}


def session_timer(graph: Graph, processors: tuple, inputs: list, calls: int = 10,
                  warmup: int = 3) -> Callable[[Plan], float]:
    """``measure`` for :func:`guard` and :func:`oracle_plan`: the median ms of ``calls``
    session calls of a plan on ``processors`` (host input, outputs back on the host).
    Its ``many(plans)`` times several plans call by call in shuffled rounds, so a drift
    of the machine reaches them all alike."""
    import statistics

    from ..runtime.session import compile
    from ..timing import time_interleaved

    def many(plans: dict[str, Plan]) -> dict[str, float]:
        sessions = {k: compile(graph, p, processors) for k, p in plans.items()}
        try:
            for s in sessions.values():
                for _ in range(warmup):
                    s(*inputs)
            samples = time_interleaved({k: (lambda s=s: s(*inputs)) for k, s in sessions.items()}, calls)
        finally:
            for s in sessions.values():
                s.close()
        return {k: statistics.median(v) for k, v in samples.items()}

    def measure(plan: Plan) -> float:
        return many({"plan": plan})["plan"]

    measure.many = many  # type: ignore[attr-defined]
    return measure


def plan_graph(graph: Graph, processors: tuple, strategy: str = "codl", cost: CostModel | None = None,
               inputs: list | None = None, measure: bool = False, progress: bool = True,
               budget_s: float | None = None, refresh: bool = False) -> PlanResult:
    """Everything ``codl plan`` does: the cost model (the cached model profile of
    ``graph`` on ``processors``, measured first when absent (within ``budget_s``; again
    with ``refresh``), unless ``cost`` is given),
    the strategy's plan, the never-slower guard (on measured times when ``measure`` or
    for the oracle), and the plan's ``meta`` (strategy, cost source, predicted ms,
    processors) filled in."""
    import sys
    import time

    from ..profile.model import load_or_profile
    from ..runtime.reference import random_inputs
    from ..runtime.session import pair_defaults

    if strategy not in STRATEGIES:
        raise CodlError(f"unknown strategy {strategy!r} (supported: {', '.join(STRATEGIES)})")
    processors = pair_defaults(tuple(processors))
    if cost is None:
        cost = load_or_profile(graph, processors, progress=progress, inputs=inputs, budget_s=budget_s, refresh=refresh)
    say = (lambda text: print(f"codl: {text}", file=sys.stderr, flush=True)) if progress else None
    timer = None
    if measure or strategy == "oracle":
        timer = session_timer(graph, processors, inputs if inputs is not None else random_inputs(graph))
    t = time.perf_counter()
    if strategy == "oracle":
        result = oracle_plan(graph, cost, timer, say)  # type: ignore[arg-type]
        planning_ms = (time.perf_counter() - t) * 1e3
    else:
        unguarded = make_plan(graph, cost, strategy, guarded=False)
        planning_ms = (time.perf_counter() - t) * 1e3
        if timer is not None and say is not None and strategy not in ("cpu", "gpu"):
            say(f"guard: timing the {strategy} plan against the faster processor alone")
        result = guard(graph, unguarded.plan, cost, strategy, timer)
        result.additive_ms = unguarded.additive_ms
    result.extra["planning_ms"] = planning_ms  # the search alone (the oracle: with its measurements)
    result.plan.meta = {"strategy": strategy, "cost_source": cost.source,
                        "predicted_ms": result.predicted.total_ms,
                        "predicted_single_ms": list(result.single_ms), "planning_ms": planning_ms,
                        "processors": [p.describe() for p in processors],
                        **({"note": result.note} if result.note else {}),
                        **({"measured_ms": result.extra["measured_ms"]} if "measured_ms" in result.extra else {})}
    return result
