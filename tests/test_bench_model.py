"""The main job's pieces: codl check, element-wise checks."""

from __future__ import annotations

import json

import pytest
import torch

from codl import zoo
from codl.bench import check_elements
from codl.cli import main
from codl.frontends import from_torch
from codl.ir.summary import node_flops
from codl.plan import CostModel, Link, plan_graph
from codl.processors import Processor
from codl.runtime.session import Session

PAIR = (Processor.parse("cpu", threads=1), Processor.parse("cpu", threads=1))
ARGS = ["vgg16", "--input-size", "32", "32", "--width", "0.25"]


@pytest.fixture(scope="module")
def plan_file(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A split plan for the small VGG-16, made from synthetic costs (no profiling)."""
    module, x = zoo.build("vgg16", (32, 32), width=0.25)
    graph = from_torch(module, x, name="vgg16")
    whole = {n.name: (node_flops(graph, n) / 1e8 + 0.001, node_flops(graph, n) / 1e8 + 0.001) for n in graph.nodes}
    cost = CostModel.synthetic(graph, whole, (Link(0.001, 0.01), Link(0.001, 0.01)))
    result = plan_graph(graph, PAIR, "codl", cost=cost, progress=False)
    assert any(p.is_split for p in result.plan.placements.values())
    path = tmp_path_factory.mktemp("plans") / "vgg16.plan.json"
    path.write_text(json.dumps(result.plan.to_json()))
    return str(path)


def test_check_elements_finds_the_worst_element_and_the_tolerance_that_passes() -> None:
    ref = [torch.linspace(-1, 1, 24).reshape(2, 3, 4), torch.ones(5)]
    out = [t.clone() for t in ref]
    out[0][1, 2, 3] += 0.5
    res = check_elements(out, ref, rtol=1e-3, atol=1e-3)
    assert not res["ok"] and res["failing"] == 1 and res["elements"] == 29
    assert res["worst"]["output"] == 0 and res["worst"]["index"] == [1, 2, 3]
    assert res["worst"]["abs_error"] == pytest.approx(0.5)
    assert check_elements(out, ref, rtol=res["smallest_rtol"] * 1.0001, atol=1e-3)["ok"]
    assert check_elements(out, ref, rtol=1e-3, atol=res["smallest_atol"] * 1.0001)["ok"]
    assert check_elements(ref, ref, rtol=0.0, atol=0.0)["ok"]
    nan = [t.clone() for t in ref]
    nan[1][0] = float("nan")
    assert not check_elements(nan, ref, rtol=1.0, atol=1.0)["ok"]


def test_check_command_passes_a_good_plan_and_catches_a_corrupted_output(plan_file: str, capsys,  # noqa: ANN001
                                                                         monkeypatch) -> None:  # noqa: ANN001
    assert main(["check", *ARGS, "--plan", plan_file]) == 0
    text = capsys.readouterr().out
    assert "check      OK: 0 of" in text and "the PyTorch module" in text

    real_call = Session.__call__

    def corrupted(self, *inputs, **kw):  # noqa: ANN001, ANN002, ANN003
        outs = [t.clone() for t in real_call(self, *inputs, **kw)]
        outs[0].view(-1)[3] += 100.0
        return outs

    monkeypatch.setattr(Session, "__call__", corrupted)
    assert main(["check", *ARGS, "--plan", plan_file]) == 1
    text = capsys.readouterr().out
    assert "check      FAILED: 1 of" in text and "at [0, 3]" in text


def test_check_refuses_a_plan_without_processors(tmp_path, capsys) -> None:  # noqa: ANN001
    module, x = zoo.build("vgg16", (32, 32), width=0.25)
    graph = from_torch(module, x, name="vgg16")
    from codl.ir.regions import Dim
    from codl.plan import Placement, Plan

    path = tmp_path / "hand.json"
    path.write_text(json.dumps(Plan.uniform(graph, Placement(Dim.OC, 0.0)).to_json()))
    assert main(["check", *ARGS, "--plan", str(path)]) == 2
    assert "does not name its two processors" in capsys.readouterr().err


def test_energy_readers_say_why_when_counters_are_absent(tmp_path) -> None:  # noqa: ANN001
    from codl.bench.energy import Nvml, Rapl, measure_energy

    missing = Rapl(str(tmp_path / "none"))
    assert missing.why and "no RAPL package counters" in missing.why
    res = measure_energy(lambda: None, min_calls=3, min_s=0.0, rapl=missing)
    assert res["cpu_mj_per_call"] is None and "no RAPL" in res["cpu_energy_unavailable"]
    assert res["gpu_mj_per_call"] is None and res["gpu_energy_unavailable"] == "no GPU in this pair"
    assert res["calls"] >= 3
    nvml = Nvml()
    if nvml.why is not None:  # no nvidia-ml-py or no NVIDIA driver here
        assert "nvidia-ml-py" in nvml.why or "NVML" in nvml.why


def test_rapl_counters_are_read_across_packages_and_wrap_around(tmp_path) -> None:  # noqa: ANN001
    from codl.bench.energy import Rapl, measure_energy

    for pkg, start in ((0, 999_000), (1, 5_000)):
        z = tmp_path / f"intel-rapl:{pkg}"
        z.mkdir()
        (z / "energy_uj").write_text(str(start))
        (z / "max_energy_range_uj").write_text("1000000")
    (tmp_path / "intel-rapl:0:0").mkdir()  # a sub-zone (core), not counted
    rapl = Rapl(str(tmp_path))
    assert rapl.why is None and len(rapl.zones) == 2

    def spend() -> None:  # package 0 wraps past its range, package 1 counts up
        (tmp_path / "intel-rapl:0" / "energy_uj").write_text("1000")
        (tmp_path / "intel-rapl:1" / "energy_uj").write_text("7000")

    res = measure_energy(spend, min_calls=2, min_s=0.0, rapl=rapl)
    # 0: 999000 -> 1000 across a range of 1000000 = 2001 uJ; 1: 2000 uJ; over 2 calls
    assert res["cpu_mj_per_call"] == pytest.approx((2001 + 2000) / 1e3 / 2)
    unreadable = tmp_path / "locked"
    (unreadable / "intel-rapl:0").mkdir(parents=True)
    assert "not readable" in Rapl(str(unreadable)).why


def test_python_api_plans_automatically_and_benchmarks(tmp_path, monkeypatch) -> None:  # noqa: ANN001
    import codl
    from test_planners import Chain

    monkeypatch.setenv("CODL_CACHE_DIR", str(tmp_path))
    module = Chain().eval()
    x = torch.randn(1, 3, 16, 16)
    with torch.inference_mode():
        expected = module(x)
    with codl.compile(module, example=x, processors=PAIR) as session:  # plan="auto": profiles once
        got = session(x)[0]
        assert session.plan.meta["strategy"] == "codl" and session.plan.meta["cost_source"].startswith("measured")
    assert float((got - expected).abs().max() / expected.abs().max()) < 1e-4
    res = codl.benchmark(module, processors=PAIR, example=x, strategies=("codl",), iters=3, warmup=1,
                         progress=False)
    assert [r["strategy"] for r in res["rows"]] == ["cpu", "gpu", "whole-cpu", "codl"]
    rows = {r["strategy"]: r for r in res["rows"]}
    twins = [(r, r["note"].split("the same plan as ")[1].split(":")[0]) for r in res["rows"] if "the same plan as" in r["note"]]
    assert all(r["samples_ms"] == rows[t]["samples_ms"] for r, t in twins)
    text = codl.format_benchmark(res)
    assert "verdict" in text and "ideal bound" in text and "hint" not in text
    # a GPU alone on the other kernel source fastest: the report points to --fastest-kernels
    assert "hint         the GPU alone ran fastest on own kernels" in codl.format_benchmark({**res, "best_single": "gpu-own"})
    assert "--fastest-kernels: 1 of 2 GPU conv and linear shapes timed faster on codl's kernels" in codl.format_benchmark(
        {**res, "kernel_choices": {"shapes": 2, "own": 1}})
    with pytest.raises(codl.errors.CodlError, match="give a Plan or 'auto'"):
        codl.compile(module, plan="fast", example=x, processors=PAIR)


def test_profile_budget_keeps_the_heaviest_ops_and_leaves_the_rest_whole() -> None:
    from codl.profile.model import profile_model

    module, x = zoo.build("vgg16", (32, 32), width=0.25)
    graph = from_torch(module, x, name="vgg16")
    cost = profile_model(graph, PAIR, repeats=1, warmup=1, progress=False, inputs=[x], budget_s=0.0)
    assert "whole only (profile budget)" in cost.source
    assert all(v.whole[0] > 0 and v.whole[1] > 0 for v in cost.nodes.values())
    assert sum(bool(v.shares) for v in cost.nodes.values()) <= 1  # at most the first, heaviest node
    plan = plan_graph(graph, PAIR, "codl", cost=cost, progress=False).plan
    assert all(not p.is_split or cost.nodes[n].shares for n, p in plan.placements.items())


def test_outputs_into_missing_directories_fail_before_any_work(tmp_path, capsys) -> None:  # noqa: ANN001
    missing = tmp_path / "nowhere" / "plan.json"
    assert main(["plan", *ARGS, "-d", "cpu,cpu", "-o", str(missing)]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["bench", *ARGS, "-d", "cpu,cpu", "--json", str(missing)]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_soak_rows_track_memory_latency_and_wrong_outputs() -> None:
    from codl.bench.soak import format_soak, soak, soak_summary
    from codl.plan import random_plan
    from codl.runtime.session import compile

    module, x = zoo.build("mobilenetv2", (64, 64), width=0.25)
    graph = from_torch(module, x, name="mobilenetv2")
    with torch.no_grad():
        expected = [module(x)]
    cpu = Processor.parse("cpu", threads=1)
    with compile(graph, random_plan(graph, 1, whole_share=0.0), (cpu, cpu)) as session:
        rows = soak(session, [x], expected, calls=7, window=3)
        assert [r["calls"] for r in rows] == [3, 6, 7]
        assert all(r["right"] and r["median_ms"] > 0 and r["host_rss_mb"] > 10 for r in rows)
        summary = soak_summary(rows)
        assert summary["all_right"] and summary["calls"] == 7 and summary["windows"] == 3
        assert summary["median_drift"] == rows[-1]["median_ms"] / rows[1]["median_ms"]
        assert len(format_soak(rows).splitlines()) == 4
        wrong = soak(session, [x], [expected[0] + 1.0], calls=2, window=2)
        assert not wrong[0]["right"] and not soak_summary(wrong)["all_right"]


def test_plans_that_run_alike_have_one_key() -> None:
    from codl.bench.model import plan_key
    from codl.ir.regions import Dim
    from codl.plan import Placement, Plan

    module, x = zoo.build("vgg16", (32, 32), width=0.125)
    graph = from_torch(module, x, name="vgg16")
    gpu_alone = plan_key(Plan.uniform(graph, Placement(Dim.OC, 1.0)), PAIR)
    assert plan_key(Plan.uniform(graph, Placement(Dim.H, 1.0)), PAIR) == gpu_alone  # whole: the dim is moot
    split = Plan.uniform(graph, Placement(Dim.OC, 1.0))
    split.placements[graph.nodes[0].name] = Placement(Dim.OC, 0.5)
    assert plan_key(split, PAIR) != gpu_alone
    assert plan_key(Plan.uniform(graph, Placement(Dim.OC, 0.0)), PAIR) != gpu_alone
    other = (PAIR[0], Processor.parse("cpu", threads=2))
    assert plan_key(Plan.uniform(graph, Placement(Dim.OC, 1.0)), other) != gpu_alone
