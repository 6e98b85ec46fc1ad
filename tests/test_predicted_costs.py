"""The predicted cost model (codl.predict.costs): the fitted predictors' times wired to the
right nodes and shares, the other ops measured, plans from it that verify and run
correctly, the refusal of predictors fitted for another processor, and ``codl plan
--costs predictors`` end to end."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from codl.cli import main
from codl.errors import CodlError
from codl.plan import plan_graph, verify_plan
from codl.plan.random import split_dims
from codl.predict.costs import Fitted, cost_from_predictors, find_predictors
from codl.predict.features import config_of
from codl.predict.profiles import fit_per_family, profile_configs
from codl.processors import Processor
from codl.processors.base import default_pair
from codl.profile.model import partial_boxes
from codl.runtime.session import compile

DATA = Path(__file__).parent / "data"
# the processor the fixture CPU profile measured: one thread, fp32, codl's own CPU convs
OWN = (Processor.parse("cpu", threads=1, own_kernels=True), Processor.parse("cpu", threads=1, own_kernels=True))
SIZE = ["--input-size", "64", "64", "--width", "0.25"]


@pytest.fixture(scope="module")
def fixture_fitted() -> Fitted:
    side = json.loads((DATA / "profile-devcpu-own.json").read_text())
    models = fit_per_family(profile_configs(DATA / "profile-devcpu-own.csv"), side["processor"], "analytic")
    return Fitted(side["processor"], models)


def test_predicted_costs_are_the_predictors_own_and_plan_correctly(small_zoo: dict, fixture_fitted: Fitted) -> None:
    graph, x, expected = small_zoo["mobilenetv2"]
    f = fixture_fitted
    cost = cost_from_predictors(graph, OWN, (f, f), inputs=[x], repeats=1, warmup=1)
    assert cost.source.startswith("predicted (cpu#0 and cpu#1: conv, linear by analytic")
    covered = 0
    for node in graph.nodes:
        nc = cost.node(node.name)
        assert nc.whole[0] > 0 and nc.whole[1] > 0, node.name
        try:
            whole = config_of(graph, node)
        except ValueError:  # measured whole; shares by the small-share rule (no points)
            assert all(pts == ([], []) for pts in nc.shares.values()), node.name
            assert cost.op_ms(node.name, 0, None, 1.0) > 0
            continue
        covered += 1
        model = f.models[whole.family]
        assert nc.whole == (pytest.approx(model.predict([whole])[0], rel=1e-12),) * 2, node.name
        assert set(nc.shares) <= set(split_dims(graph, node.name))
        for dim, per_proc in nc.shares.items():
            for q in (0, 1):
                boxes = partial_boxes(graph, node, dim, q)
                want = sorted((frac, float(model.predict([config_of(graph, node, box)])[0])) for frac, box in boxes)
                assert [s for s, _ in per_proc[q]] == [s for s, _ in want]
                assert [m for _, m in per_proc[q]] == pytest.approx([m for _, m in want], rel=1e-12)
    assert covered >= 30  # every conv and linear of MobileNetV2
    # a share of output channels costs no more than a larger share, where the predictor says so
    rising = [m1 <= m2 * 1.05 for nc in cost.nodes.values() for pts in nc.shares.values()
              for (_, m1), (_, m2) in zip(pts[1], pts[1][1:])]
    assert sum(rising) >= 0.9 * len(rising) and len(rising) > 100

    result = plan_graph(graph, OWN, "codl", costs="predictors", predictors=(f, f), inputs=[x], progress=False)
    plan = result.plan
    verify_plan(plan, graph)
    assert plan.meta["cost_source"].startswith("predicted (")
    with compile(graph, plan, OWN) as session:
        got = session(x)
    for g, e in zip(got, expected):
        assert float((g - e).abs().max() / e.abs().max()) < 1e-4


def test_predictors_of_another_processor_are_refused(small_zoo: dict, fixture_fitted: Fitted) -> None:
    graph, x, _ = small_zoo["mobilenetv2"]
    f = fixture_fitted
    library = (Processor.parse("cpu", threads=1), Processor.parse("cpu", threads=1))
    with pytest.raises(CodlError, match=r"processor 0 \(cpu\): .*kernels codl \(fitted\) vs library \(here\).*"
                                        r"plan with --own-kernels"):
        cost_from_predictors(graph, library, (f, f), inputs=[x])
    two = (OWN[0], Processor.parse("cpu", threads=2, own_kernels=True))
    with pytest.raises(CodlError, match=r"processor 1 \(cpu\): .*threads 1 \(fitted\) vs 2 \(here\).*"
                                        r"codl profile -d cpu --threads 2 --own-kernels"):
        cost_from_predictors(graph, two, (f, f), inputs=[x])


def test_plan_command_with_predicted_costs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:  # noqa: ANN001
    """A tiny profile measured here (the groups of ``-d cpu,cpu``: half the cores each),
    predictors fitted on it by ``codl predictor fit``, then ``codl plan --costs predictors``."""
    monkeypatch.setenv("CODL_CACHE_DIR", str(tmp_path / "cache"))
    half = str(max(1, len(os.sched_getaffinity(0)) // 2))
    cpu = ["-d", "cpu", "--threads", half, "--own-kernels"]
    prof = tmp_path / "prof"
    assert main(["profile", *cpu, "--no-models", "--random", "2", "--passes", "1", "--repeats", "1", "--warmup", "0",
                 "--out", str(prof)]) == 0
    assert main(["predictor", "fit", *cpu, "--out", str(prof)]) == 0
    assert main(["predictor", "fit", *cpu, "--out", str(prof), "--predictor", "flops"]) == 0
    fitted = sorted(prof.glob("*.analytic.*.json"))
    assert [p.name.split(".")[-2] for p in fitted] == ["conv", "linear"]
    on = json.loads(fitted[0].read_text())["fitted_on"]
    assert on["processor"]["kernels"] == "codl" and on["processor"]["threads"] == int(half)
    capsys.readouterr()

    out = tmp_path / "plan.json"
    plan = ["plan", "mobilenetv2", *SIZE, "-d", "cpu,cpu", "-o", str(out)]
    assert main([*plan, "--own-kernels", "--costs", "predictors", "--predictors", str(prof)]) == 0
    assert "costs predicted (cpu#0 and cpu#1: conv, linear by analytic of" in capsys.readouterr().out  # not flops
    meta = json.loads(out.read_text())["meta"]
    assert meta["cost_source"].startswith("predicted (") and meta["processors"][0]["kernels"] == "codl"
    assert main(["run", "mobilenetv2", *SIZE, "--plan", str(out), "-n", "1", "--warmup", "0"]) == 0
    assert "OK" in capsys.readouterr().out

    # predictors for other settings, none at all, and predictors from another machine
    assert main([*plan, "--costs", "predictors", "--predictors", str(prof)]) == 2
    err = capsys.readouterr().err
    assert "no fitted predictor for processor 0 (cpu)" in err and "plan with --own-kernels" in err
    assert main([*plan, "--own-kernels", "--costs", "predictors"]) == 2  # the (empty) cache
    assert "no fitted predictor for processor 0 (cpu) on this machine" in capsys.readouterr().err
    for path in prof.glob("*.json"):
        data = json.loads(path.read_text())
        if "fitted_on" in data:
            data["fitted_on"]["fingerprint"]["cpu"] = "another CPU"
            path.write_text(json.dumps(data))
    with pytest.raises(CodlError, match="no fitted predictor for processor 0 .* on this machine"):
        find_predictors(default_pair("cpu,cpu", own_kernels=True), [prof])


def test_a_gpu_on_the_faster_source_is_predicted_by_the_faster_prediction(fixture_fitted: Fitted) -> None:
    from codl.predict.costs import faster_fitted

    class Scaled:  # the fixture's conv predictor times a factor: a stand-in for another source
        def __init__(self, k: float) -> None:
            self.k = k

        def predict(self, configs):  # noqa: ANN001, ANN201
            return fixture_fitted.models["conv"].predict(configs) * self.k

    library = Fitted({"device": "cuda:0"}, {"conv": Scaled(1.0), "linear": fixture_fitted.models["linear"]}, {"conv": "lib"})
    own = Fitted({"device": "cuda:0", "kernels": "codl"}, {"conv": Scaled(0.5)}, {"conv": "own"})
    both = faster_fitted(library, own, {"device": "cuda:0", "kernels": "fastest"})
    assert set(both.models) == {"conv"}  # linear: only one source fitted, left to measurement
    assert both.name("conv") == "the faster of lib and own" and both.processor["kernels"] == "fastest"
    from codl import zoo
    from codl.frontends import from_torch
    from codl.ir.graph import OpKind

    module, x = zoo.build("mobilenetv2", (32, 32), width=0.25)
    graph = from_torch(module, x, name="mobilenetv2")
    configs = [config_of(graph, n) for n in graph.nodes if n.op is OpKind.CONV]
    assert len(configs) > 10
    want = fixture_fitted.models["conv"].predict(configs)
    assert list(both.models["conv"].predict(configs)) == pytest.approx(list(0.5 * want))
    own.models["conv"].k = 3.0
    assert list(both.models["conv"].predict(configs)) == pytest.approx(list(want))
