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
    from codl.errors import ExecutionError

    module, x = zoo.build("yolov2", (64, 64), width=0.25)
    graph = from_torch(module, x, name="yolov2")
    session = compile(graph, random_plan(graph, 5, whole_share=0.0), (Processor.parse("cpu"), Processor.parse("cuda")), sync=sync)
    steps = session._compiled[failing]
    index = [i for i, s in enumerate(steps) if s[0] in ("run", "gather")][3]
    original = steps[index]

    def boom(*args: torch.Tensor) -> torch.Tensor:
        raise RuntimeError("injected failure")
    steps[index] = original[:2] + (boom,) + original[3:]
    with pytest.raises(ExecutionError, match="injected failure"):
        session(x)
    steps[index] = original
    with torch.no_grad():
        expected = module(x)
    assert compare(session(x), [expected])["rel_l2_error"] < 1e-2


def test_bench_exchange_runs(capsys: pytest.CaptureFixture) -> None:
    from codl.cli import main

    assert main(["bench", "exchange", "-n", "20", "--mb", "0.25"]) == 0
    out = capsys.readouterr().out
    assert "events" in out and "flags" in out


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


def test_trace_times_gpu_steps_on_the_device_clock() -> None:
    module, x = zoo.build("vgg16", (64, 64), width=0.25)
    graph = from_torch(module, x, name="vgg16")
    session = compile(graph, random_plan(graph, 4), (Processor.parse("cpu"), Processor.parse("cuda")))
    session(x, trace=True)
    clocks = {(r.processor, r.clock) for r in session.trace}
    assert clocks == {(0, "host"), (1, "device")}
    assert all(r.end_ms >= r.start_ms >= 0 for r in session.trace)
