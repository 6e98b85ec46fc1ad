"""The additive cost model the planners search (CoDL's Eq. 2, per node), precomputed.

A node whole on processor p costs its time there; a split node costs ``max(T_0, T_1)``
of its two shares; an edge between a producer and a consumer costs the exchange of what
each processor needs of the tensor and does not compute itself (``T_trans + T_sync``,
the slower direction, from the cost model's links, plus the copy that assembles an
input from two pieces). Graph outputs are read on processor 0.

:class:`Problem` holds every node's candidate placements, their costs and the edge cost
matrices (numpy over candidate boxes), and solves it: dynamic programming over the
producer tree (exact when every tensor has one consumer), then single-node descent to
a local optimum, keeping the best of that and both single-processor plans.
"""

from __future__ import annotations

import numpy as np

from ..errors import CodlError
from ..ir.graph import Graph, Node
from ..ir.regions import Box, Dim, full_box, hull, is_empty, split_point
from ..ops import family
from ..runtime.schedule import share_boxes, split_alignment
from .cost import GRID, CostModel
from .random import split_dims
from .types import Placement, Plan

SHARES = GRID


def _corners(pairs: list[tuple[Box | None, Box | None]], rank: int) -> tuple[np.ndarray, np.ndarray]:
    """Start and end arrays [2, len(pairs), rank]: each processor's box of each pair
    (zeros for no region)."""
    zero = ((0, 0),) * rank
    flat = [x for pair in pairs for box in pair for se in (zero if box is None else box) for x in se]
    a = np.array(flat, dtype=np.int64).reshape(len(pairs), 2, rank, 2).transpose(1, 0, 2, 3)
    return a[..., 0], a[..., 1]


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
        self._reads: dict[tuple[str, Box | None, str], Box | None] = {}
        self._axes: dict[tuple[str, bool], tuple[int, int]] = {}
        self._share_ms: dict[tuple[str, int, bool, float], float] = {}
        self.order = [n.name for n in graph.nodes]
        self.nodes = {n.name: n for n in graph.nodes}  # (graph.node searches the list)
        # per receiving processor q, [2, 1, 1, 1]: the link's fixed ms, its ms per MB
        # (sender's part included), the ms per MB of assembling an input from two pieces
        links = (cost.links[1], cost.links[0])
        self._exchange = tuple(np.array(v, dtype=np.float64).reshape(2, 1, 1, 1) for v in (
            [link.fixed_ms for link in links], [link.ms_per_mb + link.sender_ms_per_mb for link in links],
            list(cost.copy_ms_per_mb)))
        consts_inputs = {s.name for s in graph.inputs} | set(graph.constants)
        producers = graph.producers()
        # own boxes per candidate per processor for every output tensor
        self.held: dict[str, list[tuple[Box | None, Box | None]]] = {}
        self.node_cost: dict[str, np.ndarray] = {}
        owns: dict[str, list[tuple[Box | None, Box | None]]] = {}
        for node in graph.nodes:
            # costs from split points first: only the kept candidates need their boxes
            costs = self._node_costs(node, self.cands[node.name])
            if keep is not None:
                kept = _best_per_dim(self.cands[node.name], costs, keep)
                self.cands[node.name] = [self.cands[node.name][k] for k in kept]
                costs = [costs[k] for k in kept]
            boxes = [self.own(node, p) for p in self.cands[node.name]]
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
        ends: list[tuple[str, str | None]] = []
        pairs: list[tuple[list[tuple[Box | None, Box | None]], list[tuple[Box | None, Box | None]]]] = []  # held, need
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
                ends.append((producers[name].name, node.name))
                pairs.append((self.held[name], need))
        for out in graph.outputs:
            if out in consts_inputs:
                continue
            ends.append((producers[out].name, None))
            pairs.append((self.held[out], [(full_box(graph.spec(out).shape), None)]))
        self.edges: list[tuple[str, str | None, np.ndarray]] = [
            (u, v, m) for (u, v), m in zip(ends, self._edge_matrices(pairs))]
        self.in_edges: dict[str, list[int]] = {n: [] for n in self.order}
        self.out_edges: dict[str, list[int]] = {n: [] for n in self.order}
        self.neighbours: dict[str, set[str]] = {n: set() for n in self.order}  # across an edge
        for e, (u, v, _) in enumerate(self.edges):
            self.out_edges[u].append(e)
            if v is not None:
                self.in_edges[v].append(e)
                self.neighbours[u].add(v)
                self.neighbours[v].add(u)

    def own(self, node: Node, p: Placement) -> tuple[Box | None, Box | None]:
        """The region of ``node``'s output each processor computes under ``p`` (memoised)."""
        key = (node.name, p.dim is Dim.H, p.rho)  # (an enum's hash is slow in Python)
        own = self._owns.get(key)
        if own is None:
            full = self._full(node)
            if len(node.outputs) != 1 or not 0.0 < p.rho < 1.0:
                own = (full, None) if p.rho < 1.0 else (None, full)
            else:
                axis, align = self._axis(node, p.dim)
                own = share_boxes(full, axis, align, p.rho)
            self._owns[key] = own
        return own

    def _full(self, node: Node) -> Box:
        """The whole box of ``node``'s (first) output (memoised)."""
        full = self._fulls.get(node.name)
        if full is None:
            full = self._fulls[node.name] = full_box(self.graph.spec(node.outputs[0]).shape)
        return full

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

    def reads(self, node: Node, box: Box | None, tensor: str) -> Box | None:
        """What ``node`` reads of ``tensor`` (one of its inputs, maybe more than once) to
        compute ``box`` of its output (memoised)."""
        key = (node.name, box, tensor)
        got = self._reads.get(key, False)
        if got is False:
            got = None
            for name, b in zip(node.inputs, self.input_boxes(node, box)):
                if name == tensor:
                    got = hull(got, b)
            self._reads[key] = got
        return got

    def share(self, node: Node, p: Placement, box: Box | None) -> float:
        """The fraction of ``node``'s output along ``p``'s axis that ``box`` covers."""
        if box is None:
            return 0.0
        axis = self._axis(node, p.dim)[0]
        return (box[axis][1] - box[axis][0]) / (self.graph.spec(node.outputs[0]).shape[axis])

    def share_ms(self, name: str, proc: int, dim: Dim, share: float) -> float:
        """ms of ``share`` of node ``name`` split on ``dim`` on ``proc`` (the cost
        model's, memoised: the chain search asks for the same shares again and again)."""
        key = (name, proc, dim is Dim.H, share)  # (an enum's hash is slow in Python)
        ms = self._share_ms.get(key)
        if ms is None:
            ms = self._share_ms[key] = self.cost.op_ms(name, proc, dim, share)
        return ms

    def _split_shares(self, node: Node, p: Placement) -> tuple[float, float]:
        """The fractions of ``node``'s output along ``p``'s axis that each processor owns
        under split placement ``p`` (:meth:`share` of each :meth:`own` box, without
        making the boxes: processor 0 owns ``[0, point)``, processor 1 the rest)."""
        axis, align = self._axis(node, p.dim)
        size = self._full(node)[axis][1]
        point = split_point(size, p.rho, align)
        return point / size, (size - point) / size

    def _node_costs(self, node: Node, cands: list[Placement]) -> list[float]:
        """Each candidate's own ms: whole on its processor, or the slower of its two shares."""
        times = self.cost.node(node.name)
        costs = []
        for p in cands:
            if p.is_split:
                s0, s1 = self._split_shares(node, p)
                costs.append(max(times.ms(0, p.dim, s0), times.ms(1, p.dim, s1)))
            else:
                costs.append(times.ms(p.processor, None, 1.0))
        return costs

    def _edge_matrices(self, pairs: list[tuple[list[tuple[Box | None, Box | None]],
                                                list[tuple[Box | None, Box | None]]]]) -> list[np.ndarray]:
        """For each (held, need) of an edge, the ms of the slower direction of what each
        processor needs and does not hold, [len(held), len(need)]. Edges of the same
        shape are computed together (numpy's cost is per call, not per element): axis 0
        of the arrays is the processor q, axis 1 the edge."""
        groups: dict[tuple[int, int, int], list[int]] = {}
        for i, (held, need) in enumerate(pairs):
            rank = next((len(b) for pair in held + need for b in pair if b is not None), 1)
            groups.setdefault((len(held), len(need), rank), []).append(i)
        out: list[np.ndarray] = [np.empty(0)] * len(pairs)
        fixed, per_mb, copy = self._exchange
        for (kp, kc, rank), members in groups.items():
            lo, hi = _corners([box for i in members for box in pairs[i][0] + pairs[i][1]], rank)
            lo, hi = lo.reshape(2, len(members), kp + kc, rank), hi.reshape(2, len(members), kp + kc, rank)
            hl, hh, nl, nh = lo[:, :, :kp, None], hi[:, :, :kp, None], lo[:, :, None, kp:], hi[:, :, None, kp:]
            # volumes by multiplying the extents, an empty axis counting 0
            need_vol = np.multiply.reduce(np.maximum(nh - nl, 0), axis=-1)  # [2, G, 1, Kc]
            inter = np.multiply.reduce(np.maximum(np.minimum(hh, nh) - np.maximum(hl, nl), 0), axis=-1)  # [2, G, Kp, Kc]
            missing = (need_vol - inter) * self.cost.itemsize
            ms = np.where(missing > 0, fixed + per_mb * missing / 1e6, 0.0)
            # an input partly held and partly received is assembled into one buffer first
            ms += np.where((missing > 0) & (inter > 0), copy * need_vol * self.cost.itemsize / 1e6, 0.0)
            worst = ms.max(axis=0)
            for g, i in enumerate(members):
                out[i] = worst[g]
        return out

    def edge_ms(self, held: tuple[Box | None, Box | None], need: tuple[Box | None, Box | None]) -> float:
        """One entry of :meth:`_edge_matrices`, without numpy (for the chain search)."""
        worst = 0.0
        for q in (0, 1):
            n = need[q]
            if is_empty(n):
                continue
            need_vol = _volume(n)
            h = held[q]
            missing = need_vol if is_empty(h) else need_vol - _overlap(h, n)
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
            choice.setdefault(n, int(value[n].argmin()))
            for e in self.in_edges[n]:
                choice.setdefault(self.edges[e][0], int(best_from[e][choice[n]]))
        return choice

    def descend(self, choice: dict[str, int], sweeps: int = 20) -> dict[str, int]:
        """Move single nodes to their best candidate while the total falls."""
        # only nodes a neighbour of which moved since they were last looked at can move
        # (the others would find the same best candidate again)
        pending = set(self.order)
        for _ in range(sweeps):
            improved = False
            for n in self.order:
                if n not in pending:
                    continue
                pending.discard(n)
                c = self.local(choice, n)
                k = int(c.argmin())
                if c[k] < c[choice[n]] - 1e-9:
                    choice[n], improved = k, True
                    pending.update(self.neighbours[n])
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


def _volume(box: Box) -> int:
    """Elements in a box (no empty axis)."""
    n = 1
    for s, e in box:
        n *= e - s
    return n


def _overlap(a: Box, b: Box) -> int:
    """Elements two boxes share."""
    n = 1
    for (s1, e1), (s2, e2) in zip(a, b):
        side = min(e1, e2) - max(s1, s2)
        if side <= 0:
            return 0
        n *= side
    return n


def _best_per_dim(cands: list[Placement], costs: list[float], keep: int) -> list[int]:
    """Indices of the whole placements and of the ``keep`` cheapest shares of each dimension."""
    whole: list[int] = []
    split: dict[bool, list[tuple[float, int]]] = {}  # by dim is Dim.H (an enum's hash is slow in Python)
    for k, p in enumerate(cands):
        if p.is_split:
            split.setdefault(p.dim is Dim.H, []).append((costs[k], k))
        else:
            whole.append(k)
    return sorted(whole + [k for shares in split.values() for _, k in sorted(shares)[:keep]])


def _whole() -> list[Placement]:
    return [Placement(Dim.OC, 0.0), Placement(Dim.OC, 1.0)]


def candidates(graph: Graph, cost: CostModel, split: bool, shares: tuple[float, ...] = SHARES) -> dict[str, list[Placement]]:
    """Each node's placements to search: whole on either processor and, with ``split``,
    every dimension both the node and the cost model split on, at ``shares``."""
    out = {}
    at_shares = {d: [Placement(d, r) for r in shares] for d in Dim}  # (placements are immutable: shared)
    for node in graph.nodes:
        cands = _whole()
        if split:
            dims = [d for d in split_dims(graph, node.name) if d in cost.dims(node.name)]
            cands += [p for d in dims for p in at_shares[d]]
        out[node.name] = cands
    return out
