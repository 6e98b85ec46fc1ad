"""Co-execution on the CPU pair: random valid plans (dims, ratios, chains) on every
evaluation model give the reference outputs; plans are verified; errors end the run."""

from __future__ import annotations

import json

import pytest
import torch

from codl import zoo
from codl.errors import CodlError, ExecutionError
from codl.frontends import from_torch
from codl.ir import Graph, OpKind
from codl.ir.regions import Dim
from codl.plan import Placement, Plan, PlanError, random_plan, split_dims, verify_plan
from codl.processors import Processor
from codl.runtime.session import compile
from test_session_safety import fail_at

PAIR = (Processor.parse("cpu", threads=1), Processor.parse("cpu", threads=1))
FP32_RTOL = 1e-4


def assert_matches(got: torch.Tensor, expected: torch.Tensor) -> None:
    """fp32 agreement, allowing for kernels that differ with the thread count."""
    err = float((got - expected).abs().max() / expected.abs().max())
    assert err < FP32_RTOL, f"relative error {err:.2e}"


@pytest.fixture
def graphs(small_zoo: dict) -> dict[str, tuple[Graph, torch.Tensor, list[torch.Tensor]]]:
    return small_zoo


@pytest.mark.parametrize("name", list(zoo.MODELS))
def test_random_plans_match_reference(name: str, graphs: dict) -> None:
    graph, x, expected = graphs[name]
    for seed in range(3):
        plan = random_plan(graph, seed)
        session = compile(graph, plan, PAIR)
        got = session(x)
        for g, e in zip(got, expected):
            err = float((g - e).abs().max() / e.abs().max())
            assert err < FP32_RTOL, f"{name} seed {seed}: relative error {err:.2e}; chains {plan.chains}"
        assert session.schedule.programs[0].steps and session.schedule.programs[1].steps


def test_all_on_one_side_and_all_split(graphs: dict) -> None:
    graph, x, expected = graphs["resnet50"]
    for rho in (0.0, 1.0):
        session = compile(graph, Plan.uniform(graph, Placement(Dim.OC, rho)), PAIR)
        assert len(session.schedule.channels) == (0 if rho == 0.0 else 1)  # only the output comes back
        assert_matches(session(x)[0], expected[0])


def test_chain_exchanges_only_at_its_ends(graphs: dict) -> None:
    graph, x, expected = graphs["vgg16"]
    convs = [n.name for n in graph.nodes][:5]  # conv, relu, conv, relu, maxpool
    assert [graph.node(n).op for n in convs] == [OpKind.CONV, OpKind.RELU, OpKind.CONV, OpKind.RELU, OpKind.MAX_POOL]
    plan = Plan(graph.name, {n.name: Placement(Dim.H, 0.0) for n in graph.nodes})
    for n in convs:
        plan.placements[n] = Placement(Dim.H, 0.5)
    unchained = compile(graph, plan, PAIR)
    plan.chains = [convs]
    chained = compile(graph, plan, PAIR)
    crossing = {t for _, t, _ in chained.schedule.channels}
    inner = {graph.node(n).outputs[0] for n in convs[:-1]}
    assert not crossing & inner and len(chained.schedule.channels) < len(unchained.schedule.channels)
    # the halo grows backwards: the first conv computes more rows on each side than its share
    first = chained.schedule.boxes[convs[0]]
    height = graph.spec(graph.node(convs[0]).outputs[0]).shape[2]
    assert first[0][2][1] > height // 2 and first[1][2][0] < height // 2
    assert_matches(chained(x)[0], expected[0])


def test_trace_records_both_processors(graphs: dict) -> None:
    graph, x, _ = graphs["mobilenetv2"]
    session = compile(graph, random_plan(graph, 7), PAIR)
    session(x, trace=True)
    trace = session.last_trace
    assert {e.track for e in trace.events} == set(session._tracks)
    assert {e.kind for e in trace.events} == {"run", "copy", "wait"}
    assert all(e.end_ms >= e.start_ms >= 0 for e in trace.events)


@pytest.mark.parametrize("failing", [0, 1])
def test_error_on_either_side_ends_the_run_without_deadlock(graphs: dict, failing: int) -> None:
    graph, x, expected = graphs["yolov2"]
    plan = Plan.uniform(graph, Placement(Dim.H, 0.5))
    for n in graph.nodes:
        if Dim.H not in split_dims(graph, n.name):
            plan.placements[n.name] = Placement(Dim.H, 0.0)
    session = compile(graph, plan, PAIR)
    target = fail_at(session, failing, 3)
    with pytest.raises(ExecutionError, match=f"run step '{target.name}' failed on processor {failing}.*injected failure"):
        session(x)
    session.fault_hook = None  # the session stays usable
    assert_matches(session(x)[0], expected[0])


def test_verify_plan_names_each_problem(graphs: dict) -> None:
    graph, _, _ = graphs["vit"]
    plan = random_plan(graph, 1)
    reshape = next(n for n in graph.nodes if n.op is OpKind.RESHAPE)
    ln = next(n for n in graph.nodes if n.op is OpKind.LAYER_NORM)
    first = graph.nodes[0].name
    plan.placements[reshape.name] = Placement(Dim.H, 0.5)
    plan.placements[ln.name] = Placement(Dim.OC, 0.5)
    plan.placements["ghost"] = Placement(Dim.H, 1.0)
    del plan.placements[first]
    plan.chains.append([ln.name, reshape.name])
    with pytest.raises(PlanError) as info:
        verify_plan(plan, graph)
    text = str(info.value)
    assert f"node '{reshape.name}' (Reshape): cannot be split on h (supported: none" in text
    assert f"node '{ln.name}' (LayerNorm): cannot be split on oc (supported: ['h'])" in text
    assert "placement for unknown node 'ghost'" in text and f"node '{first}' (Conv): no placement" in text
    assert f"does not read the output of '{ln.name}'" in text


def test_plan_json_round_trip(graphs: dict) -> None:
    graph, _, _ = graphs["fst"]
    plan = random_plan(graph, 3)
    back = Plan.from_json(json.loads(json.dumps(plan.to_json())))
    assert back == plan
    with pytest.raises(PlanError, match="not a codl plan"):
        Plan.from_json({"kind": "model"})


def test_pinned_cpu_groups_and_mixed_types(graphs: dict) -> None:
    """Two CPU groups on disjoint cores, the second computing in bf16 channels-last: data
    crossing between them is converted to the receiver's type."""
    import os

    from codl.ir import DType

    cores = sorted(os.sched_getaffinity(0))
    first, second = (cores[:1], cores[1:2]) if len(cores) > 1 else (cores, cores)
    pair = (Processor.parse("cpu", cores=tuple(first)),
            Processor.parse("cpu", cores=tuple(second), dtype=DType.BFLOAT16, channels_last=True))
    assert pair[0].threads == 1 and pair[0].describe()["cores"] == first
    graph, x, expected = graphs["resnet50"]
    session = compile(graph, random_plan(graph, 2), pair)
    got = session(x)
    assert got[0].dtype == torch.float32
    assert float((got[0] - expected[0]).norm() / expected[0].norm()) < 5e-2
    assert os.sched_getaffinity(0) == set(cores)  # the caller's thread is left alone


def test_bad_cores_are_refused() -> None:
    from codl.errors import CodlError

    with pytest.raises(CodlError, match="a CPU group needs a non-empty subset of the cores"):
        Processor.parse("cpu", cores=(10_000,))


def test_decoder_with_transposed_convs() -> None:
    from torch import nn

    torch.manual_seed(0)
    module = nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1), nn.ReLU(), nn.ConvTranspose2d(8, 6, 4, 2, 1),
                           nn.ReLU(), nn.ConvTranspose2d(6, 4, 3, 2, 1, output_padding=1), nn.Conv2d(4, 3, 3, 1, 1)).eval()
    x = torch.randn(1, 3, 20, 18)
    graph = from_torch(module, x, name="decoder")
    with torch.no_grad():
        expected = module(x)
    for seed in range(6):
        plan = random_plan(graph, seed, whole_share=0.0)
        assert_matches(compile(graph, plan, PAIR)(x)[0], expected)


def test_closed_session_stops_its_threads(graphs: dict) -> None:
    import threading

    graph, x, expected = graphs["yolov2"]
    before = threading.active_count()
    with compile(graph, random_plan(graph, 1, whole_share=0.0), PAIR) as session:
        assert threading.active_count() == before + 2  # one per CPU group
        assert_matches(session(x)[0], expected[0])
    for _ in range(100):
        if threading.active_count() == before:
            break
        import time
        time.sleep(0.01)
    assert threading.active_count() == before
    with pytest.raises(CodlError, match="closed"):
        session(x)


def test_top_level_compile_takes_graphs_files_and_modules(tmp_path, graphs: dict) -> None:  # noqa: ANN001
    import codl
    from codl.frontends import export_onnx

    module, x = zoo.build("resnet50", (64, 64), width=0.25)
    graph, _, expected = graphs["resnet50"]
    plan = random_plan(graph, 9)
    path = tmp_path / "r.onnx"
    path.write_bytes(export_onnx(module, x))
    for model, kw in ((graph, {}), (str(path), {}), (module, {"example": x})):
        with codl.compile(model, plan, PAIR, **kw) as session:
            assert_matches(session(x)[0], expected[0])
    with pytest.raises(CodlError, match="needs example="):
        codl.compile(module, plan, PAIR)


def test_inputs_and_processors_are_checked_with_clear_errors(graphs: dict) -> None:
    graph, x, expected = graphs["vgg16"]
    with compile(graph, random_plan(graph, 2), PAIR) as session:
        assert_matches(session(x.numpy())[0], expected[0])  # numpy arrays are taken as they are
        for bad, message in (([0.0] * 4, "must be a torch.Tensor or numpy array"), (None, "got NoneType"),
                             (x.long(), "must be a floating-point tensor")):
            with pytest.raises(CodlError, match=message):
                session(bad)
    with pytest.raises(CodlError, match="takes two processors"):
        compile(graph, random_plan(graph, 2), (PAIR[0],))
    with pytest.raises(CodlError, match="takes two processors"):
        compile(graph, random_plan(graph, 2), (*PAIR, PAIR[0]))
