"""Co-execution on the CPU and a CUDA GPU: random plans on every model match the
reference. Skipped without a GPU; on the GPU machine:

    PYTHONPATH=src python -m pytest -q tests/test_gpu_session.py
"""

from __future__ import annotations

import pytest
import torch

from codl import zoo
from codl.bench import compare
from codl.frontends import from_torch
from codl.ir import DType
from codl.ir.regions import Dim
from codl.plan import Placement, Plan, random_plan
from codl.processors import Processor
from codl.runtime.session import compile

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]
SMALL = {"fst": (64, 96), "vit": (64, 64)}
# (GPU type, channels-last, tolerance on ||y - ref|| / ||ref||): TF32 convs in "fp32" on CUDA
CONFIGS = [(DType.FLOAT32, False, 1e-2), (DType.FLOAT16, True, 1e-2)]


@pytest.mark.parametrize("name", list(zoo.MODELS))
@pytest.mark.parametrize("gpu_dtype,channels_last,tol", CONFIGS)
@pytest.mark.parametrize("sync", ["events", "flags"])
def test_random_plans_on_cpu_and_cuda(name: str, gpu_dtype: DType, channels_last: bool, tol: float, sync: str) -> None:
    module, x = zoo.build(name, SMALL.get(name, (96, 96)), width=0.5)
    graph = from_torch(module, x, name=name)
    with torch.no_grad():
        expected = module(x)
    expected = [expected] if isinstance(expected, torch.Tensor) else list(expected)
    procs = (Processor.parse("cpu"), Processor.parse("cuda", dtype=gpu_dtype, channels_last=channels_last))
    for seed in range(3):
        session = compile(graph, random_plan(graph, seed), procs, sync=sync)
        for _ in range(2):  # the second call reuses the staging buffers
            got = session(x)
            assert all(g.device.type == "cpu" for g in got)
            err = compare(got, expected)["rel_l2_error"]
            assert err < tol, f"{name} seed {seed}: relative error {err:.2e}"


@pytest.mark.parametrize("name", ["vgg16", "fst", "retinaface", "vit"])
@pytest.mark.parametrize("sync", ["events", "flags"])
def test_random_plans_each_processor_in_its_native_type(name: str, sync: str) -> None:
    """CPU bf16 channels-last with GPU fp16 channels-last (the GPU machine's native
    types): pieces cross in the CPU's layout and are converted on the GPU."""
    module, x = zoo.build(name, SMALL.get(name, (96, 96)), width=0.5)
    graph = from_torch(module, x, name=name)
    with torch.no_grad():
        expected = module(x)
    expected = [expected] if isinstance(expected, torch.Tensor) else list(expected)
    procs = (Processor.parse("cpu", dtype=DType.BFLOAT16, channels_last=True),
             Processor.parse("cuda", dtype=DType.FLOAT16, channels_last=True))
    for seed in range(3):
        session = compile(graph, random_plan(graph, seed), procs, sync=sync)
        for _ in range(2):
            err = compare(session(x), expected)["rel_l2_error"]
            assert err < 5e-2, f"{name} seed {seed}: relative error {err:.2e}"


@pytest.mark.parametrize("name", ["mobilenetv2", "yolov2", "retinaface"])
def test_random_plans_with_own_gpu_kernels(name: str) -> None:
    module, x = zoo.build(name, SMALL.get(name, (96, 96)), width=0.5)
    graph = from_torch(module, x, name=name)
    with torch.no_grad():
        expected = module(x)
    expected = [expected] if isinstance(expected, torch.Tensor) else list(expected)
    gpu = Processor.parse("cuda", dtype=DType.FLOAT16, channels_last=True, own_kernels=True)
    for seed in range(3):
        got = compile(graph, random_plan(graph, seed), (Processor.parse("cpu"), gpu))(x)
        err = compare(got, expected)["rel_l2_error"]
        assert err < 1e-2, f"{name} seed {seed}: relative error {err:.2e}"


def test_all_on_gpu_returns_host_outputs() -> None:
    module, x = zoo.build("resnet50", (64, 64), width=0.25)
    graph = from_torch(module, x, name="resnet50")
    session = compile(graph, Plan.uniform(graph, Placement(Dim.OC, 1.0)), (Processor.parse("cpu"), Processor.parse("cuda")))
    with torch.no_grad():
        expected = module(x)
    assert compare(session(x), [expected])["rel_l2_error"] < 1e-2


@pytest.mark.parametrize("sync", ["events", "flags"])
@pytest.mark.parametrize("failing", [0, 1])
def test_failure_on_either_side_releases_the_other(sync: str, failing: int) -> None:
    from test_session_safety import fail_at

    from codl.errors import ExecutionError

    module, x = zoo.build("yolov2", (64, 64), width=0.25)
    graph = from_torch(module, x, name="yolov2")
    session = compile(graph, random_plan(graph, 5, whole_share=0.0), (Processor.parse("cpu"), Processor.parse("cuda")), sync=sync)
    fail_at(session, failing, 3)
    with pytest.raises(ExecutionError, match=f"failed on processor {failing}.*injected failure"):
        session(x)
    session.fault_hook = None
    with torch.no_grad():
        expected = module(x)
    for _ in range(2):
        assert compare(session(x), [expected])["rel_l2_error"] < 1e-2


def test_bench_exchange_runs(capsys: pytest.CaptureFixture) -> None:
    from codl.cli import main

    assert main(["bench", "exchange", "-n", "2"]) == 0
    out = capsys.readouterr().out
    assert "32 MB dtype+layout  dma*" in out and "64 KB none          mapped*" in out


@pytest.mark.parametrize("sync", ["events", "flags"])
def test_session_with_sm_limited_gpu(sync: str) -> None:
    module, x = zoo.build("posenet", (64, 64), width=0.5)
    graph = from_torch(module, x, name="posenet")
    procs = (Processor.parse("cpu"), Processor.parse("cuda", dtype=DType.FLOAT16, channels_last=True, sm_limit=8))
    session = compile(graph, random_plan(graph, 11), procs, sync=sync)
    with torch.no_grad():
        expected = module(x)
    for _ in range(2):
        assert compare(session(x), [expected])["rel_l2_error"] < 1e-2


def test_trace_times_gpu_steps_on_the_device_clock(tmp_path) -> None:  # noqa: ANN001
    import json

    module, x = zoo.build("vgg16", (64, 64), width=0.25)
    graph = from_torch(module, x, name="vgg16")
    session = compile(graph, random_plan(graph, 4, whole_share=0.0), (Processor.parse("cpu"), Processor.parse("cuda")))
    with torch.no_grad():
        expected = module(x)
    assert compare(session(x, trace=True), [expected])["rel_l2_error"] < 1e-2
    trace = session.last_trace
    clocks = {(e.track, e.clock) for e in trace.events}
    gpu_tracks = {session._tracks[1], session.gpu.side.copy_track}
    assert (session._tracks[0], "host") in clocks and (session._tracks[1], "device") in clocks
    assert clocks <= {(session._tracks[0], "host")} | {(t, "device") for t in gpu_tracks}
    assert all(e.end_ms >= e.start_ms >= 0 for e in trace.events)
    session.save_trace(tmp_path / "t.json")
    data = json.loads((tmp_path / "t.json").read_text())
    assert {e["id"] for e in data["traceEvents"] if e["ph"] == "s"} == set(range(len(session.channels)))
    assert {e["id"] for e in data["traceEvents"] if e["ph"] == "f"} == set(range(len(session.channels)))


def test_flags_sessions_replay_a_cuda_graph_and_stay_right() -> None:
    """The default sync with a GPU is flags, the GPU side runs from a CUDA graph, calls
    from four threads are all right, and outputs are not changed by the next call
    (the GPU's pieces come back through pinned buffers reused by every call)."""
    import threading

    module, x = zoo.build("resnet50", (64, 64), width=0.25)
    graph = from_torch(module, x, name="resnet50")
    inputs = [torch.randn(x.shape) for _ in range(4)]
    with torch.no_grad():
        expected = [[module(i)] for i in inputs]
    for plan in (random_plan(graph, 2), Plan.uniform(graph, Placement(Dim.OC, 1.0))):
        session = compile(graph, plan, (Processor.parse("cpu"), Processor.parse("cuda")))
        assert session.sync_mode == "flags" and session.gpu.graph is not None
        first = session(inputs[0])
        kept = [t.clone() for t in first]
        session(inputs[1])
        assert all(torch.equal(a, b) for a, b in zip(first, kept))
        wrong: list[int] = []

        def worker(k: int) -> None:
            for _ in range(6):
                if compare(session(inputs[k]), expected[k])["rel_l2_error"] > 1e-2:
                    wrong.append(k)
        threads = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        assert not any(t.is_alive() for t in threads) and not wrong
        session.close()


@pytest.mark.parametrize("cuda_graph", [True, False])
def test_interrupted_flags_calls_leave_the_next_call_right(cuda_graph: bool) -> None:
    import random
    import time

    from test_session_safety import in_thread, interrupted_call

    module, x = zoo.build("yolov2", (96, 96), width=0.5)
    graph = from_torch(module, x, name="yolov2")
    session = compile(graph, random_plan(graph, 3, whole_share=0.0), (Processor.parse("cpu"), Processor.parse("cuda")),
                      sync="flags", timeout_s=30, cuda_graph=cuda_graph)
    with torch.no_grad():
        expected = module(x)
    start = time.perf_counter()
    session(x)
    call_s = time.perf_counter() - start
    rng = random.Random(1)
    for trial in range(20):
        interrupted_call(session, x, rng.uniform(0.0, 1.5 * call_s))
        assert compare(in_thread(lambda: session(x)), [expected])["rel_l2_error"] < 1e-2, f"trial {trial}"


@pytest.mark.parametrize("fastest", [False, True])
def test_bench_times_the_gpu_alone_on_both_kernel_sources(tmp_path, monkeypatch, fastest: bool) -> None:  # noqa: ANN001
    from codl.bench.model import bench_model

    monkeypatch.setenv("CODL_CACHE_DIR", str(tmp_path))
    module, x = zoo.build("vgg16", (32, 32), width=0.25)
    graph = from_torch(module, x, name="vgg16")
    pair = (Processor.parse("cpu", dtype=DType.BFLOAT16, channels_last=True),
            Processor.parse("cuda", dtype=DType.FLOAT16, channels_last=True, sm_limit=8, fastest_kernels=fastest))
    res = bench_model(graph, pair, [x], ["codl"], iters=3, warmup=1, progress=False, measure_power=False)
    rows = {r["strategy"]: r for r in res["rows"]}
    others = ("gpu-library", "gpu-own") if fastest else ("gpu-own",)
    assert set(rows) == {"cpu", "gpu", *others, "codl"}
    assert rows["gpu-own"]["processors"][1]["kernels"] == "codl"
    assert rows["gpu"]["processors"][1].get("kernels") == ("fastest" if fastest else None)
    if fastest:
        assert res["kernel_choices"]["shapes"] >= 13 and 0 <= res["kernel_choices"]["own"] <= res["kernel_choices"]["shapes"]
    singles = {s: rows[s]["latency_ms"]["median_ms"] for s in ("cpu", "gpu", *others)}
    assert res["best_single"] == min(singles, key=singles.get)
    assert rows["codl"]["speedup"] == pytest.approx(singles[res["best_single"]] / rows["codl"]["latency_ms"]["median_ms"])


def test_fastest_kernels_time_each_shape_once_and_match_the_library() -> None:
    from codl.ops import fastest
    from codl.runtime.reference import ReferenceRunner

    fastest.forget()
    module, x = zoo.build("fst", (64, 96), width=0.5)
    graph = from_torch(module, x, name="fst")
    library = Processor.parse("cuda", dtype=DType.FLOAT16, channels_last=True, sm_limit=8)
    chooser = Processor.parse("cuda", dtype=DType.FLOAT16, channels_last=True, sm_limit=8, fastest_kernels=True)
    want = ReferenceRunner(graph, library)(x)
    runner = ReferenceRunner(graph, chooser)
    got = runner(x)
    made = fastest.choices()
    assert made and all(c.library_ms > 0 and c.own_ms > 0 for c in made.values())
    assert compare(got, want)["rel_l2_error"] < 1e-2
    runner(x)
    assert fastest.choices() == made  # the same shapes: nothing timed again
    plan = Plan.uniform(graph, Placement(Dim.OC, 0.5))
    session = compile(graph, plan, (Processor.parse("cpu"), chooser), sync="flags")
    try:
        assert compare(session(x), want)["rel_l2_error"] < 1e-2
        assert len(fastest.choices()) > len(made)  # the GPU's shares are shapes of their own
    finally:
        session.close()
