"""The cost model the planners call, and nothing else: what a node's share costs on one
processor, and what an exchange between the processors costs, in ms, with the source of
every number.

A :class:`CostModel` is a table: for every node, its time whole on each processor and,
for each dimension it splits on, its time at a few shares of that dimension on each
processor (measured or predicted; ``source`` says which). Between two table points a
share's time is interpolated linearly; below the smallest point it is taken as that
point's time scaled by ``0.5 + 0.5 * share / smallest`` (a partial op keeps a fixed part
of its cost: measured, small shares cost 2-5x their fraction; docs/results/coexec.md).

An exchange costs the sender ``sender_ms_per_mb`` per MB of its own time (the CPU's copy
into pinned memory) and arrives ``fixed_ms + ms_per_mb * MB`` after the send starts.

Example::

    cost = CostModel.synthetic(graph, {"conv1": (4.0, 1.0)})   # whole-node ms, CPU and GPU
    cost.op_ms("conv1", 1, Dim.OC, 0.5)
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from operator import itemgetter
from typing import Any

from ..errors import CodlError
from ..ir.graph import Graph
from ..ir.regions import Dim

COST_SCHEMA_VERSION = 1
# The shares a model profile measures and the planners consider: a partial op's time
# jumps between shapes (a library picks another kernel), so planners use measured points
GRID = tuple(round(0.1 * i, 1) for i in range(1, 10))
_SHARE = itemgetter(0)  # of a (share, ms) point


class CostModelError(CodlError):
    """A cost model cannot answer, or its file is malformed."""


@dataclass(frozen=True)
class Link:
    """One direction of exchange: arrival after ``fixed_ms + ms_per_mb * MB``; the sender
    is busy ``sender_ms_per_mb * MB`` of that."""

    fixed_ms: float
    ms_per_mb: float
    sender_ms_per_mb: float = 0.0

    def ms(self, nbytes: float) -> float:
        return 0.0 if nbytes <= 0 else self.fixed_ms + self.ms_per_mb * nbytes / 1e6

    def sender_ms(self, nbytes: float) -> float:
        return 0.0 if nbytes <= 0 else self.sender_ms_per_mb * nbytes / 1e6

    @staticmethod
    def fit(points: list[tuple[int, float]], sender_ms_per_mb: float = 0.0) -> "Link":
        """Least squares of ms = fixed + per_mb * MB over measured (bytes, ms), both >= 0."""
        if not points:
            raise CostModelError("no exchange measurements to fit a link on")
        n = len(points)
        xs = [b / 1e6 for b, _ in points]
        ys = [ms for _, ms in points]
        mx, my = sum(xs) / n, sum(ys) / n
        var = sum((x - mx) ** 2 for x in xs)
        slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / var if var > 0 else 0.0
        slope = max(0.0, slope)
        fixed = max(0.0, my - slope * mx)
        return Link(fixed, slope, sender_ms_per_mb)

    def to_json(self) -> dict[str, float]:
        return {"fixed_ms": self.fixed_ms, "ms_per_mb": self.ms_per_mb, "sender_ms_per_mb": self.sender_ms_per_mb}


@dataclass
class NodeCost:
    """One node: whole ms on each processor; per split dimension, per processor, sorted
    (share, ms) points measured below 1."""

    whole: tuple[float, float]
    shares: dict[Dim, tuple[list[tuple[float, float]], list[tuple[float, float]]]] = field(default_factory=dict)

    def ms(self, proc: int, dim: Dim | None, share: float) -> float:
        whole = self.whole[proc]
        if share >= 1.0 or dim is None:
            return whole
        if share <= 0.0:
            return 0.0
        points = self.shares.get(dim)
        if points is None:
            raise CostModelError(f"no cost for a share on {dim.value}")
        pts = points[proc]  # and (1.0, whole) after them
        i = bisect.bisect_left(pts, share, key=_SHARE)
        s1, m1 = pts[i] if i < len(pts) else (1.0, whole)
        if i == 0:
            return m1 * (0.5 + 0.5 * share / s1)
        s0, m0 = pts[i - 1]
        return m0 + (m1 - m0) * (share - s0) / (s1 - s0) if s1 > s0 else m1


@dataclass
class CostModel:
    """Per-node costs and the two links (``links[s]``: data sent by processor ``s``)."""

    graph: str
    nodes: dict[str, NodeCost]
    links: tuple[Link, Link]
    source: str  # "measured (model profile)", "predicted (...)", "synthetic"
    processors: list[dict[str, Any]] = field(default_factory=list)
    itemsize: int = 4  # bytes per element crossing (the CPU side's compute type)
    # ms per MB of a copy on each processor: an input assembled from its own and a
    # received piece is copied into one buffer before the op runs
    copy_ms_per_mb: tuple[float, float] = (0.0, 0.0)
    links_version: int = 0  # how the links were measured (codl.profile.model.LINKS_VERSION)

    def assemble_ms(self, proc: int, nbytes: float) -> float:
        return self.copy_ms_per_mb[proc] * nbytes / 1e6

    def node(self, name: str) -> NodeCost:
        try:
            return self.nodes[name]
        except KeyError:
            raise CostModelError(f"the cost model of {self.graph!r} has no node {name!r} "
                                 f"(was it made for another graph?)") from None

    def op_ms(self, name: str, proc: int, dim: Dim | None, share: float) -> float:
        return self.node(name).ms(proc, dim, share)

    def dims(self, name: str) -> list[Dim]:
        """The split dimensions the model has costs for."""
        return list(self.node(name).shares)

    def check(self, graph: Graph) -> None:
        missing = [n.name for n in graph.nodes if n.name not in self.nodes]
        if missing:
            raise CostModelError(f"cost model for {self.graph!r} lacks {len(missing)} nodes of graph "
                                 f"{graph.name!r} (first: {missing[0]!r}); make it for this graph")

    @staticmethod
    def synthetic(graph: Graph, whole: dict[str, tuple[float, float]], links: tuple[Link, Link] | None = None,
                  linear: bool = True) -> "CostModel":
        """A model from given whole-node times (nodes not given cost nothing); shares
        cost exactly their fraction when ``linear`` (for tests and examples)."""
        from .random import split_dims

        nodes = {}
        for node in graph.nodes:
            w = whole.get(node.name, (0.0, 0.0))
            shares = {d: tuple([(s, w[p] * s) for s in (0.25, 0.5, 0.75)] for p in (0, 1)) if linear else ([], [])
                      for d in split_dims(graph, node.name)}
            nodes[node.name] = NodeCost(w, shares)  # type: ignore[arg-type]
        return CostModel(graph.name, nodes, links or (Link(0.0, 0.0), Link(0.0, 0.0)), "synthetic")

    def to_json(self) -> dict[str, Any]:
        from ..fingerprint import artifact_header

        return {**artifact_header("cost-model"), "schema_version": COST_SCHEMA_VERSION, "graph": self.graph,
                "source": self.source, "processors": self.processors, "itemsize": self.itemsize,
                "copy_ms_per_mb": list(self.copy_ms_per_mb),
                "links": [link.to_json() for link in self.links], "links_version": self.links_version,
                "nodes": {k: {"whole": list(v.whole),
                              "shares": {d.value: [[list(p) for p in pts] for pts in v.shares[d]] for d in v.shares}}
                          for k, v in self.nodes.items()}}

    @staticmethod
    def from_json(d: dict[str, Any]) -> "CostModel":
        from ..fingerprint import check_artifact

        check_artifact(d, "cost-model", COST_SCHEMA_VERSION, "cost model", CostModelError)
        try:
            nodes = {}
            for name, v in d["nodes"].items():
                whole = (float(v["whole"][0]), float(v["whole"][1]))
                shares = {Dim(k): tuple(sorted((float(s), float(ms)) for s, ms in pts) for pts in per_proc)
                          for k, per_proc in v["shares"].items()}
                for ms in [*whole, *(m for per in shares.values() for pts in per for _, m in pts)]:
                    if not ms >= 0.0 or ms == float("inf"):
                        raise ValueError(f"node {name!r}: time {ms} is not a finite non-negative number")
                nodes[name] = NodeCost(whole, shares)  # type: ignore[arg-type]
            links = tuple(Link(float(x["fixed_ms"]), float(x["ms_per_mb"]), float(x.get("sender_ms_per_mb", 0.0)))
                          for x in d["links"])
            if len(links) != 2:
                raise ValueError("need two links")
            copy = tuple(float(x) for x in d.get("copy_ms_per_mb", (0.0, 0.0)))
            if len(copy) != 2 or not all(0.0 <= x < float("inf") for x in copy):
                raise ValueError(f"copy_ms_per_mb {copy} is not two finite non-negative numbers")
        except (KeyError, ValueError, TypeError, IndexError) as e:
            raise CostModelError(f"malformed cost model: {e}") from None
        return CostModel(d["graph"], nodes, links, d.get("source", "unknown"), d.get("processors", []),  # type: ignore[arg-type]
                         int(d.get("itemsize", 4)), copy, int(d.get("links_version", 0)))  # type: ignore[arg-type]
