"""The plan: how every node of a graph is shared between two processors.

Processor 0 is the CPU side, processor 1 the GPU side (or the second CPU group of a
``cpu-pair``). For each node a :class:`Placement` gives the partition dimension and
``rho``, processor 1's share of that dimension: ``rho == 0`` runs the node whole on
processor 0, ``rho == 1`` whole on processor 1, anything between splits it (split points
are aligned by the operator's rule). A chain is a run of consecutive nodes with the same
placement that each processor computes over its own, halo-enlarged region, so data is
exchanged only at the chain's ends.

Plans are JSON with a schema version; ``verify_plan`` checks one against its graph and
lists every problem, naming the node.

Example::

    plan = Plan.uniform(graph, Placement(Dim.OC, 0.5))
    verify_plan(plan, graph)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..errors import CodlError
from ..ir.graph import Graph
from ..ir.regions import Dim

PLAN_SCHEMA_VERSION = 1


class PlanError(CodlError):
    """A plan does not fit its graph."""


@dataclass(frozen=True)
class Placement:
    dim: Dim
    rho: float  # processor 1's share, in [0, 1]

    @property
    def is_split(self) -> bool:
        return 0.0 < self.rho < 1.0

    @property
    def processor(self) -> int | None:
        """The single processor running the node, or None when it is split."""
        return None if self.is_split else int(self.rho >= 1.0)


@dataclass
class Plan:
    graph: str
    placements: dict[str, Placement]
    chains: list[list[str]] = field(default_factory=list)
    # how the plan was made, for later runs: strategy, cost_source, predicted_ms,
    # processors (Processor.describe() of each, CPU first); empty for hand-made plans
    meta: dict[str, Any] = field(default_factory=dict)

    @staticmethod
    def uniform(graph: Graph, placement: Placement) -> "Plan":
        return Plan(graph.name, {n.name: placement for n in graph.nodes})

    def to_json(self) -> dict[str, Any]:
        """JSON with the artifact header (schema version, codl version, this machine's
        fingerprint: plans are made for the machine they are saved on)."""
        from ..fingerprint import artifact_header

        return {**artifact_header("plan"), "schema_version": PLAN_SCHEMA_VERSION, "graph": self.graph,
                "placements": {k: {"dim": p.dim.value, "rho": p.rho} for k, p in self.placements.items()},
                "chains": [list(c) for c in self.chains], **({"meta": self.meta} if self.meta else {})}

    @staticmethod
    def from_json(d: dict[str, Any]) -> "Plan":
        from ..fingerprint import check_artifact

        check_artifact(d, "plan", PLAN_SCHEMA_VERSION, "plan", PlanError)
        try:
            placements = {k: Placement(Dim(v["dim"]), float(v["rho"])) for k, v in d["placements"].items()}
        except (KeyError, ValueError, TypeError) as e:
            raise PlanError(f"malformed placement in plan: {e}") from None
        meta = d.get("meta", {})
        if not isinstance(meta, dict):
            raise PlanError("malformed plan: 'meta' must be an object")
        return Plan(d["graph"], placements, [list(c) for c in d.get("chains", [])], meta)


def verify_plan(plan: Plan, graph: Graph) -> None:
    """Raise :class:`PlanError` listing every way ``plan`` does not fit ``graph``."""
    from ..ops import family

    problems: list[str] = []
    names = {n.name for n in graph.nodes}
    problems += [f"placement for unknown node {k!r}" for k in plan.placements if k not in names]
    for node in graph.nodes:
        where = f"node {node.name!r} ({node.op.value})"
        p = plan.placements.get(node.name)
        if p is None:
            problems.append(f"{where}: no placement")
            continue
        if not 0.0 <= p.rho <= 1.0:
            problems.append(f"{where}: rho {p.rho} outside [0, 1]")
            continue
        if not p.is_split:
            continue
        ins = [graph.spec(i) for i in node.inputs]
        axes = family(node.op).split_axes(node, ins, graph.spec(node.outputs[0])) if len(node.outputs) == 1 else {}
        if p.dim not in axes:
            problems.append(f"{where}: cannot be split on {p.dim.value} (supported: "
                            f"{[d.value for d in axes] or 'none, run it whole with rho 0 or 1'})")
    problems += _chain_problems(plan, graph)
    if problems:
        raise PlanError(f"plan does not fit graph {graph.name!r}:\n  " + "\n  ".join(problems))


def _chain_problems(plan: Plan, graph: Graph) -> list[str]:
    problems: list[str] = []
    order = {n.name: i for i, n in enumerate(graph.nodes)}
    nodes = {n.name: n for n in graph.nodes}  # (graph.node searches the list)
    seen: set[str] = set()
    for c, chain in enumerate(plan.chains):
        where = f"chain {c} {chain}"
        unknown = [n for n in chain if n not in order]
        if unknown or len(chain) < 2:
            problems.append(f"{where}: " + (f"unknown nodes {unknown}" if unknown else "needs at least two nodes"))
            continue
        if seen & set(chain):
            problems.append(f"{where}: nodes {sorted(seen & set(chain))} are already in another chain")
        seen.update(chain)
        first = plan.placements.get(chain[0])
        if first is None or not first.is_split:
            problems.append(f"{where}: a chain's nodes must be split (0 < rho < 1)")
        for prev, cur in zip(chain, chain[1:]):
            if plan.placements.get(cur) != first:
                problems.append(f"{where}: node {cur!r} has placement {plan.placements.get(cur)}, chain has {first}")
            if nodes[prev].outputs[0] not in nodes[cur].inputs or order[cur] < order[prev]:
                problems.append(f"{where}: node {cur!r} does not read the output of {prev!r}")
    return problems
