"""The planners: a Graph, its two processors' cost model and a strategy -> a Plan.

All strategies but ``oracle`` search one additive cost (CoDL's Eq. 2, per node;
:mod:`codl.plan.problem`): a node whole on processor p costs its time there; a split
node costs ``max(T_0, T_1)`` of its two shares; an edge between a producer and a
consumer costs the exchange of what each processor needs of the tensor and does not
compute itself. The row chains are :mod:`codl.plan.chains`.

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
from typing import Callable, Sequence

from ..errors import CodlError
from ..ir.graph import Graph, OpKind
from ..ir.regions import Dim
from .chains import chain_search
from .cost import CostModel
from .problem import Problem, candidates
from .random import split_dims
from .simulate import Prediction, predict_plan, predict_single
from .types import Placement, Plan

STRATEGIES = ("cpu", "gpu", "layer-switch", "mulayer", "codl", "oracle")
COSTS = ("profile", "predictors")  # where plan_graph's cost model comes from
KEEP = 5  # shares per node and dimension the codl search keeps (the cheapest by the node's own cost)
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
               budget_s: float | None = None, refresh: bool = False, costs: str = "profile",
               predictors: Sequence | None = None) -> PlanResult:
    """Everything ``codl plan`` does: the cost model, unless ``cost`` is given: with
    ``costs="profile"`` the cached model profile of ``graph`` on ``processors``,
    measured first when absent (within ``budget_s``; again with ``refresh``); with
    ``costs="predictors"`` the fitted predictors' (:mod:`codl.predict.costs`; ``predictors``:
    a pair of :class:`codl.predict.costs.Fitted`, or predictor files and directories,
    default the codl cache); then the strategy's plan, the never-slower guard (on
    measured times when ``measure`` or for the oracle), and the plan's ``meta``
    (strategy, cost source, predicted ms, processors) filled in."""
    import sys
    import time

    from ..profile.model import load_or_profile
    from ..runtime.reference import random_inputs
    from ..runtime.session import pair_defaults

    if strategy not in STRATEGIES:
        raise CodlError(f"unknown strategy {strategy!r} (supported: {', '.join(STRATEGIES)})")
    if costs not in COSTS:
        raise CodlError(f"unknown cost source {costs!r} (supported: {', '.join(COSTS)})")
    processors = pair_defaults(tuple(processors))
    if cost is None and costs == "predictors":
        from ..predict.costs import Fitted, cost_from_predictors, find_predictors

        given = predictors is not None and len(predictors) == 2 and all(isinstance(f, Fitted) for f in predictors)
        fitted = tuple(predictors) if given else find_predictors(processors, predictors)  # type: ignore[arg-type]
        cost = cost_from_predictors(graph, processors, fitted, inputs=inputs, progress=progress)  # type: ignore[arg-type]
    elif cost is None:
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
