"""Random valid plans: a fuzzer for the executor and a floor for planners to beat."""

from __future__ import annotations

import random

from ..ir.graph import Graph
from ..ir.regions import Dim
from ..ops import family
from .types import Placement, Plan, verify_plan


def split_dims(graph: Graph, name: str) -> list[Dim]:
    """The partition dimensions node ``name`` supports (none for multi-output nodes)."""
    node = graph.node(name)
    if len(node.outputs) != 1:
        return []
    return list(family(node.op).split_axes(node, [graph.spec(i) for i in node.inputs], graph.spec(node.outputs[0])))


def random_plan(graph: Graph, seed: int, whole_share: float = 0.2, chain_share: float = 0.4) -> Plan:
    """Each node whole on a random side (with probability ``whole_share``, or when it
    cannot split) or split on a random supported dim at a random ratio; chains of up to 5
    nodes start at a split node with probability ``chain_share``."""
    rng = random.Random(seed)
    plan = Plan(graph.name, {})
    for node in graph.nodes:
        dims = split_dims(graph, node.name)
        if not dims or rng.random() < whole_share:
            plan.placements[node.name] = Placement(Dim.OC, rng.choice([0.0, 1.0]))
        else:
            plan.placements[node.name] = Placement(rng.choice(dims), rng.choice([0.1, 0.3, 0.5, 0.7, 0.9, rng.random()]))
    consumers = graph.consumers()
    chained: set[str] = set()
    for node in graph.nodes:
        p = plan.placements[node.name]
        if node.name in chained or not p.is_split or rng.random() > chain_share:
            continue
        chain = [node.name]
        while len(chain) < 5:
            users = [u for u in consumers.get(graph.node(chain[-1]).outputs[0], [])
                     if u.name not in chained and u.name not in chain and p.dim in split_dims(graph, u.name)]
            if not users or rng.random() > 0.75:
                break
            chain.append(users[0].name)
            plan.placements[users[0].name] = p
        if len(chain) > 1:
            plan.chains.append(chain)
            chained.update(chain)
    verify_plan(plan, graph)
    return plan
