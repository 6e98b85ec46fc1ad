"""CUDA execution of every evaluation model. Skipped without a GPU; on the GPU machine:

    PYTHONPATH=src python -m pytest -q tests/test_gpu.py
"""

from __future__ import annotations

import pytest
import torch

from codl import zoo
from codl.bench import compare, tolerance
from codl.cli import main
from codl.frontends import from_torch
from codl.ir import DType
from codl.processors import Processor
from codl.runtime import ReferenceRunner

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]
SMALL = {"fst": (96, 128), "vit": (64, 64)}


@pytest.mark.parametrize("name", list(zoo.MODELS))
@pytest.mark.parametrize("dtype,channels_last", [(DType.FLOAT32, False), (DType.FLOAT16, True)])
def test_model_on_cuda_matches_cpu_reference(name: str, dtype: DType, channels_last: bool) -> None:
    module, x = zoo.build(name, SMALL.get(name, (128, 128)), width=0.5)
    graph = from_torch(module, x, name=name)
    with torch.no_grad():
        expected = module(x)
    expected = [expected] if isinstance(expected, torch.Tensor) else list(expected)
    proc = Processor.parse("cuda", dtype=dtype, channels_last=channels_last)
    got = ReferenceRunner(graph, proc)(x.cuda())
    torch.cuda.synchronize()
    assert all(g.device.type == "cuda" and g.dtype == proc.torch_dtype for g in got)
    err, tol = compare(got, expected)["rel_l2_error"], tolerance(proc)
    assert err < tol, f"{name} {dtype.value}: relative error {err:.2e} >= {tol:.0e}"


def test_cli_run_on_cuda(capsys: pytest.CaptureFixture) -> None:
    assert main(["run", "resnet50", "-d", "cuda", "--dtype", "fp16", "--channels-last", "-n", "5"]) == 0
    out = capsys.readouterr().out
    assert "cuda:0" in out and "OK" in out


@pytest.mark.parametrize("sms", [8, 32])
def test_sm_limited_processor_matches(sms: int) -> None:
    module, x = zoo.build("yolov2", (128, 128), width=0.5)
    graph = from_torch(module, x, name="yolov2")
    proc = Processor.parse("cuda", sm_limit=sms)
    assert proc.stream() is not None and proc.describe()["sm_limit"] == sms
    got = ReferenceRunner(graph, proc)(x)
    proc.synchronize()
    with torch.no_grad():
        expected = module(x)
    assert compare(got, [expected])["rel_l2_error"] < tolerance(proc)
