"""Planners: exactness against brute force on small graphs with synthetic cost models,
the chain search, the never-slower guard, the oracle, plans that run correctly on the
CPU pair for every built-in model, the measured model profile and the plan command."""

from __future__ import annotations

import csv
import itertools
import json
import random

import pytest
import torch
from torch import nn

from codl import zoo
from codl.bench.model import load_results
from codl.cli import main
from codl.errors import CodlError
from codl.frontends import from_torch
from codl.ir import Graph
from codl.ir.regions import Dim
from codl.ir.summary import node_flops
from codl.plan import (
    STRATEGIES,
    CostModel,
    CostModelError,
    Link,
    NodeCost,
    Plan,
    make_plan,
    oracle_plan,
    predict_plan,
    split_dims,
    verify_plan,
)
from codl.plan.chains import chain_search
from codl.plan.problem import Problem, candidates
from codl.plan.simulate import predict_single
from codl.processors import Processor
from codl.profile.model import LINKS_VERSION, load_or_profile, profile_path
from codl.runtime import ReferenceRunner
from codl.runtime.session import compile

PAIR = (Processor.parse("cpu", threads=1), Processor.parse("cpu", threads=1))


class Chain(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.c1, self.c2, self.c3 = nn.Conv2d(3, 16, 3, padding=1), nn.Conv2d(16, 16, 3, padding=1), nn.Conv2d(16, 8, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.c3(torch.relu(self.c2(torch.relu(self.c1(x)))))


class Residual(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.c1, self.c2, self.c3 = nn.Conv2d(3, 16, 3, padding=1), nn.Conv2d(16, 16, 3, padding=1), nn.Conv2d(16, 16, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.c1(x)
        return self.c3(torch.relu(self.c2(a)) + a)


def small(module: nn.Module, name: str, hw: int = 16) -> tuple[Graph, torch.Tensor]:
    torch.manual_seed(0)
    x = torch.randn(1, 3, hw, hw)
    return from_torch(module.eval(), x, name=name), x


def synthetic(graph: Graph, seed: int, linear: bool = False) -> CostModel:
    """Random whole times; shares cost their fraction (``linear``) or more, with a fixed part."""
    rng = random.Random(seed)
    nodes = {}
    for node in graph.nodes:
        whole = (rng.uniform(0.1, 3.0), rng.uniform(0.05, 2.0))
        shares = {}
        for d in split_dims(graph, node.name):
            pts = []
            for w in whole:
                fixed = 0.0 if linear else rng.uniform(0.0, 0.3)
                pts.append([(s, w * (fixed + (1 - fixed) * s)) for s in (0.25, 0.5, 0.75)])
            shares[d] = (pts[0], pts[1])
        nodes[node.name] = NodeCost(whole, shares)
    links = (Link(rng.uniform(0.01, 0.3), rng.uniform(0.1, 2.0)), Link(rng.uniform(0.01, 0.3), rng.uniform(0.1, 2.0)))
    return CostModel(graph.name, nodes, links, "synthetic")


def brute_force(problem: Problem) -> float:
    names = problem.order
    best = float("inf")
    for combo in itertools.product(*(range(len(problem.cands[n])) for n in names)):
        best = min(best, problem.total(dict(zip(names, combo))))
    return best


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("split", [False, True])
def test_dynamic_programming_equals_brute_force_on_a_chain(seed: int, split: bool) -> None:
    graph, _ = small(Chain(), "chain")
    cost = synthetic(graph, seed)
    problem = Problem(graph, cost, candidates(graph, cost, split=split, shares=(0.3, 0.6)))
    assert len(problem.order) == 5
    choice = problem.tree_dp()
    assert problem.total(choice) == pytest.approx(brute_force(problem), rel=1e-9)


@pytest.mark.parametrize("seed", range(6))
def test_branches_reach_a_local_optimum_no_worse_than_either_processor(seed: int) -> None:
    graph, _ = small(Residual(), "residual")
    cost = synthetic(graph, seed)
    problem = Problem(graph, cost, candidates(graph, cost, split=True, shares=(0.3, 0.6)))
    choice = problem.solve()
    total = problem.total(choice)
    for proc in (0, 1):
        assert total <= problem.total({n: problem._whole_index(n, proc) for n in problem.order}) + 1e-9
    for n in problem.order:  # no single node's move lowers the cost
        assert problem.local(choice, n).min() >= problem.local(choice, n)[choice[n]] - 1e-9
    assert total >= brute_force(problem) - 1e-9


def test_layer_switch_switches_where_each_processor_is_faster() -> None:
    graph, _ = small(Chain(), "chain")
    names = [n.name for n in graph.nodes]
    # the first two nodes fast on processor 0, the rest on 1; a cheap link: switch once
    whole = {n: ((0.1, 5.0) if i < 2 else (5.0, 0.1)) for i, n in enumerate(names)}
    cost = CostModel.synthetic(graph, whole, (Link(0.01, 0.01), Link(0.01, 0.01)))
    plan = make_plan(graph, cost, "layer-switch").plan
    assert [plan.placements[n].processor for n in names] == [0, 0, 1, 1, 1]
    # an expensive link: stay on one side
    cost = CostModel.synthetic(graph, whole, (Link(100.0, 1.0), Link(100.0, 1.0)))
    plan = make_plan(graph, cost, "layer-switch").plan
    assert len({plan.placements[n].processor for n in names}) == 1


@pytest.mark.parametrize("seed", range(8))
def test_chain_search_never_predicts_worse_than_no_chains(seed: int) -> None:
    graph, _ = small(Chain(), "chain", hw=32)
    cost = synthetic(graph, seed, linear=True)
    problem = Problem(graph, cost, candidates(graph, cost, split=True))
    choice = problem.solve()
    plain = problem.plan(choice)
    result = make_plan(graph, cost, "codl", guarded=False)
    assert result.predicted.total_ms <= predict_plan(graph, plain, cost).total_ms + 1e-9


def test_chains_form_where_exchanges_are_dear() -> None:
    graph, x = small(Chain(), "chain", hw=32)
    whole = {n.name: (1.0, 1.0) for n in graph.nodes}
    cost = CostModel.synthetic(graph, whole, (Link(0.5, 1.0), Link(0.5, 1.0)))
    problem = Problem(graph, cost, candidates(graph, cost, split=True))
    choice = problem.solve()
    plan = chain_search(problem, choice)
    assert plan.chains, "equal processors and dear exchanges: a row chain should pay"
    verify_plan(plan, graph)
    assert predict_plan(graph, plan, cost).total_ms < predict_plan(graph, problem.plan(choice), cost).total_ms
    got = compile(graph, plan, PAIR)(x)[0]
    ref = ReferenceRunner(graph, Processor.parse("cpu"))(x)[0]
    assert float((got - ref).abs().max() / ref.abs().max()) < 1e-4


def test_guard_replaces_a_slower_plan_and_says_by_how_much() -> None:
    graph, _ = small(Chain(), "chain")
    whole = {n.name: (2.0, 1.0) for n in graph.nodes}
    cost = CostModel.synthetic(graph, whole, (Link(2.0, 0.0), Link(2.0, 0.0)))
    result = make_plan(graph, cost, "mulayer")  # every node split: dear exchanges before each conv
    assert all(p.rho == 1.0 for p in result.plan.placements.values())
    assert "slower than processor 1 alone" in result.note and "x: using processor 1 alone" in result.note
    # measured times decide when given
    result = make_plan(graph, cost, "layer-switch", measure=lambda plan: 1.0)
    assert result.note == ""


def test_oracle_keeps_the_fastest_measured_plan() -> None:
    graph, _ = small(Chain(), "chain")
    cost = synthetic(graph, 0)
    seen: list[Plan] = []

    def measure(plan: Plan) -> float:
        seen.append(plan)
        return 1.0 + (0.0 if len(seen) == 3 else 1.0)

    result = oracle_plan(graph, cost, measure)
    assert result.plan is seen[2]
    assert result.extra["measured_ms"][result.extra["chosen"]] == 1.0
    assert len(result.extra["measured_ms"]) == len(seen) >= 8


def test_mulayer_splits_output_channels_at_the_flops_ratio() -> None:
    graph, _ = small(Chain(), "chain", hw=32)
    whole = {n.name: (3.0, 1.0) for n in graph.nodes}
    cost = CostModel.synthetic(graph, whole)
    plan = make_plan(graph, cost, "mulayer", guarded=False).plan
    assert {p.dim for p in plan.placements.values()} == {Dim.OC}
    assert {p.rho for p in plan.placements.values()} == {0.75}  # processor 1 three times as fast


def test_cost_model_json_round_trip_and_validation(tmp_path) -> None:  # noqa: ANN001
    graph, _ = small(Chain(), "chain")
    cost = synthetic(graph, 1)
    back = CostModel.from_json(json.loads(json.dumps(cost.to_json())))
    for n in graph.nodes:
        for q in (0, 1):
            for d in cost.dims(n.name):
                assert back.op_ms(n.name, q, d, 0.4) == pytest.approx(cost.op_ms(n.name, q, d, 0.4))
    bad = cost.to_json()
    first = next(iter(bad["nodes"]))
    bad["nodes"][first]["whole"] = [float("nan"), 1.0]
    with pytest.raises(CostModelError, match="finite non-negative"):
        CostModel.from_json(bad)
    with pytest.raises(CostModelError, match="not a codl cost model"):
        CostModel.from_json({"kind": "plan"})
    other, _ = small(Residual(), "residual")
    with pytest.raises(CostModelError, match="lacks"):
        make_plan(other, cost, "codl")


def test_share_interpolation_and_link_fit() -> None:
    node = NodeCost((2.0, 1.0), {Dim.H: ([(0.5, 1.5)], [(0.5, 0.5)])})
    assert node.ms(0, Dim.H, 0.75) == pytest.approx(1.75)  # between (0.5, 1.5) and (1, 2)
    assert node.ms(0, Dim.H, 0.25) == pytest.approx(1.5 * 0.75)  # below the grid: half fixed
    assert node.ms(1, None, 0.3) == 1.0
    link = Link.fit([(1_000_000, 1.1), (2_000_000, 2.1), (4_000_000, 4.1)])
    assert link.fixed_ms == pytest.approx(0.1) and link.ms_per_mb == pytest.approx(1.0)
    assert link.ms(0) == 0.0


@pytest.fixture
def zoo_graphs(small_zoo: dict) -> dict[str, tuple[Graph, torch.Tensor, list[torch.Tensor]]]:
    return small_zoo


@pytest.mark.parametrize("name", list(zoo.MODELS))
def test_every_strategy_plans_and_runs_correctly_on_every_model(name: str, zoo_graphs: dict) -> None:
    graph, x, expected = zoo_graphs[name]
    # processor 1 about twice as fast (FLOPs-proportional), cheap exchanges: plans split
    flops = {n.name: node_flops(graph, n) for n in graph.nodes}
    whole = {n: (f / 1e8 + 0.002, f / 2e8 + 0.003) for n, f in flops.items()}
    cost = CostModel.synthetic(graph, whole, (Link(0.002, 0.05), Link(0.002, 0.05)), linear=False)
    for strategy in STRATEGIES:
        if strategy == "oracle":
            result = oracle_plan(graph, cost, lambda plan: predict_plan(graph, plan, cost).total_ms)
            plans = [result.plan]
        else:
            result = make_plan(graph, cost, strategy)
            plans = [result.plan, make_plan(graph, cost, strategy, guarded=False).plan]  # also the unguarded one
        if strategy not in ("cpu", "gpu"):
            assert result.predicted.total_ms <= min(result.single_ms) + 1e-9
        else:  # the closed form the guard uses is the simulation of the single-processor plan
            proc = int(strategy == "gpu")
            assert predict_single(graph, cost, proc).total_ms == pytest.approx(
                predict_plan(graph, result.plan, cost).total_ms, rel=1e-9)
        for plan in plans:
            verify_plan(plan, graph)
            with compile(graph, plan, PAIR) as session:
                got = session(x)
            for g, e in zip(got, expected):
                err = float((g - e).abs().max() / e.abs().max())
                assert err < 1e-4, f"{name} {strategy}: relative error {err:.2e}"


def test_measured_profile_is_cached_and_plan_command_writes_a_runnable_plan(tmp_path, monkeypatch, capsys) -> None:  # noqa: ANN001
    monkeypatch.setenv("CODL_CACHE_DIR", str(tmp_path / "cache"))
    graph, x = small(Chain(), "chain")
    cost = load_or_profile(graph, PAIR, progress=False, repeats=1, warmup=1, inputs=[x])
    assert cost.source == "measured (model profile)"
    assert all(v.whole[0] > 0 and v.whole[1] > 0 for v in cost.nodes.values())
    assert all(pts[0] and pts[1] for v in cost.nodes.values() for pts in v.shares.values())
    path = profile_path(graph, PAIR)
    assert path.exists()
    again = load_or_profile(graph, PAIR, progress=False, repeats=1, warmup=1, inputs=[x])
    assert again.to_json()["nodes"] == cost.to_json()["nodes"]  # loaded, not measured again
    # links measured by an older codl are measured again, the node costs kept
    old = {**cost.to_json(), "links_version": 1, "links": [{"fixed_ms": 9.0, "ms_per_mb": 9.0}] * 2}
    path.write_text(json.dumps(old))
    renewed = load_or_profile(graph, PAIR, progress=False, repeats=1, warmup=1, inputs=[x])
    assert renewed.links_version == LINKS_VERSION and renewed.links[0].fixed_ms < 9.0
    assert renewed.to_json()["nodes"] == cost.to_json()["nodes"]
    assert json.loads(path.read_text())["links_version"] == LINKS_VERSION

    out = tmp_path / "plan.json"
    args = ["vgg16", "--input-size", "32", "32", "--width", "0.25", "-d", "cpu,cpu"]
    assert main(["plan", *args, "--strategy", "codl", "-o", str(out)]) == 0
    text = capsys.readouterr().out
    assert "predicted  plan" in text and "placement" in text and "exchanges" in text
    saved = json.loads(out.read_text())
    assert saved["meta"]["strategy"] == "codl" and saved["meta"]["cost_source"] == "measured (model profile)"
    assert len(saved["meta"]["processors"]) == 2 and saved["meta"]["predicted_ms"] > 0
    assert main(["run", "vgg16", "--input-size", "32", "32", "--width", "0.25", "--plan", str(out), "-n", "2",
                 "--warmup", "1"]) == 0
    text = capsys.readouterr().out
    assert "OK" in text and "measured/predicted" in text
    assert main(["run", "yolov2", "--input-size", "32", "32", "--plan", str(out), "-n", "1"]) == 2
    assert "is a plan for 'vgg16'" in capsys.readouterr().err

    # the main job, on the same (cached) profile
    report = tmp_path / "bench.json"
    report_dir = tmp_path / "report"
    assert main(["bench", *args, "--strategies", "layer-switch,codl", "-n", "3", "--warmup", "1",
                 "--json", str(report), "--report", str(report_dir)]) == 0
    text = capsys.readouterr().out
    for row in ("cpu#0", "cpu#1", "whole-cpu", "layer-switch", "codl", "ideal bound", "verdict"):
        assert f"\n{row} " in text or text.startswith(f"{row} ") or f"{row}  " in text, row
    res = json.loads(report.read_text())
    assert {r["strategy"] for r in res["rows"]} == {"cpu", "gpu", "whole-cpu", "layer-switch", "codl"}
    assert all(len(r["samples_ms"]) == 3 and r["latency_ms"]["median_ms"] > 0 for r in res["rows"])
    assert main(["bench", *args, "--strategies", "fastest"]) == 2
    assert "unknown ['fastest']" in capsys.readouterr().err

    # the report directory: results through their schema, per-op CSV, trace, plots
    back = load_results(json.loads((report_dir / "results.json").read_text()))
    assert [r["strategy"] for r in back["rows"]] == [r["strategy"] for r in res["rows"]]
    # codl's plan is traced, or where the guard left it on one processor the fastest plan using both
    assert back["settings"]["strategies"] == "layer-switch,codl" and back["traced"] in ("codl", "layer-switch")
    with open(report_dir / "ops.csv", newline="") as f:
        ops = list(csv.DictReader(f))
    assert [o["op"] for o in ops] == [n.name for n in from_torch(*zoo.build("vgg16", (32, 32), width=0.25),
                                                                  name="vgg16").nodes]
    assert all(float(o["measured_ms_0"]) + float(o["measured_ms_1"]) > 0 for o in ops)
    trace = json.loads((report_dir / f"{back['traced']}.trace.json").read_text())
    assert any(e.get("ph") == "X" and e.get("cat") == "run" for e in trace["traceEvents"])
    for png in ("latency.png", "ops.png", "ratios.png"):
        assert (report_dir / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    broken = dict(back, rows=[dict(back["rows"][0], speedup="fast")])
    with pytest.raises(CodlError, match=r"rows\[0\].speedup"):
        load_results(broken)


@pytest.mark.parametrize("seed", range(4))
def test_refining_on_the_schedule_never_predicts_worse(seed: int) -> None:
    from codl.plan.search import refine

    graph, x = small(Residual(), "residual", hw=32)
    cost = synthetic(graph, seed)
    start = make_plan(graph, cost, "codl", guarded=False).plan
    better = refine(graph, start, cost)
    verify_plan(better, graph)
    assert predict_plan(graph, better, cost).total_ms <= predict_plan(graph, start, cost).total_ms + 1e-9
    got = compile(graph, better, PAIR)(x)[0]
    ref = ReferenceRunner(graph, Processor.parse("cpu"))(x)[0]
    assert float((got - ref).abs().max() / ref.abs().max()) < 1e-4
