"""CUDA execution of every evaluation model. Skipped without a GPU; on the GPU machine:

    PYTHONPATH=src python -m pytest -q tests/test_gpu.py
"""

from __future__ import annotations

import csv

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


def test_cuda_library_settings_apply_inside_work_context_only(tmp_path) -> None:
    from codl.profile import profile_path

    carve = torch._C._get_sm_carveout_experimental()
    limited = Processor.parse("cuda", dtype=DType.FLOAT16, channels_last=True, sm_limit=8, autotune=True)
    total = torch.cuda.get_device_properties(0).multi_processor_count
    assert limited.describe()["blas_sm_target"] == 8 and limited.describe()["autotune"] is True
    assert "blas_sm_target" not in Processor.parse("cuda").describe()
    assert profile_path(limited, tmp_path).name.endswith("-sm8-at.csv")
    with limited.work_context():
        assert torch._C._get_sm_carveout_experimental() == total - 8 and torch.backends.cudnn.benchmark
        a = torch.randn(512, 512, device="cuda", dtype=torch.float16)
        b = a @ a  # a GEMM planned for the 8 SMs runs and gives the right result
    limited.synchronize()
    assert torch.allclose(b.float(), a.float() @ a.float(), rtol=1e-2, atol=1e-1)
    assert torch._C._get_sm_carveout_experimental() == carve and not torch.backends.cudnn.benchmark


@pytest.mark.parametrize("sms", [None, 8])
def test_event_timing_and_profile_on_cuda(sms: int | None, tmp_path) -> None:
    from codl.bench.run import time_back_to_back
    from codl.profile import Sample, conv_parts, load_profile, noise_floor, profile_path, run_profile

    proc = Processor.parse("cuda", dtype=DType.FLOAT16, channels_last=True, sm_limit=sms)
    a = torch.randn(2048, 2048, device="cuda", dtype=torch.float16)
    with proc.work_context():
        samples, batch, clock = time_back_to_back(lambda: a @ a, proc, repeats=3, warmup=2, target_ms=2.0)
    big = 2 * 2048 ** 3 / (samples[0] * 1e-3)  # flop/s: a real matmul was timed, not the launch alone
    assert clock == "graph" and len(samples) == 3 and batch >= 1 and 1e11 < big < 2e15
    base = Sample("conv", 64, 128, 56, 56, 3, 1, 1, 1, 1)
    pairs = [(base, p) for p in conv_parts(base)]
    path = profile_path(proc, tmp_path)
    assert run_profile(proc, pairs, path, budget_s=120, repeats=3, warmup=2, passes=2, progress=False) == 2 * len(pairs)
    rows = load_profile(path)
    whole = next(ms for _, s, ms in rows if s == base)
    assert all(ms > 0 for _, _, ms in rows) and min(ms for _, _, ms in rows) < whole  # some share is faster
    with path.open(newline="") as f:
        launches = [row["launch_ms"] for row in csv.DictReader(f)]
    assert launches.count("") == len(pairs)  # measured in the first pass only
    assert all(0 < float(ms) < 5 for ms in launches if ms)  # the host's launch time per call
    assert noise_floor(path)["conv"]["samples"] == len(pairs)


def test_transfer_profile_on_cuda(tmp_path) -> None:
    from codl.predict.transfer import evaluate_transfers
    from codl.profile.transfer import load_transfers, run_transfer_profile, transfer_path

    cpu, gpu = Processor.parse("cpu"), Processor.parse("cuda", dtype=DType.FLOAT16)
    path = transfer_path(cpu, gpu, tmp_path)
    sizes = tuple(2 ** e for e in range(12, 25))
    assert run_transfer_profile(cpu, gpu, path, passes=1, sizes=sizes, repeats=3, progress=False) > 0
    rows = load_transfers(path)
    kinds = {k for k, _, _ in rows}
    assert {"h2d", "d2h", "gpu_convert", "sync_events", "sync_flags"} <= kinds
    h2d = dict((b, t) for k, b, t in rows if k == "h2d")
    assert 1 < 2 ** 24 / (h2d[2 ** 24] * 1e6) < 200  # GB/s of a 16 MiB pinned copy: PCIe or NVLink-C2C range
    assert evaluate_transfers(rows)["h2d"]["n_test"] > 0


@pytest.mark.parametrize("name,sms", [("mobilenetv2", None), ("yolov2", 8), ("vit", None), ("retinaface", None)])
def test_own_kernels_run_and_match(name: str, sms: int | None, monkeypatch: pytest.MonkeyPatch) -> None:
    from codl.ops import own_kernels

    calls = []
    conv2d = own_kernels.conv2d
    monkeypatch.setattr(own_kernels, "conv2d", lambda *a: calls.append(a[-1]) or conv2d(*a))
    module, x = zoo.build(name, SMALL.get(name, (128, 128)), width=0.5)
    graph = from_torch(module, x, name=name)
    proc = Processor.parse("cuda", dtype=DType.FLOAT16, channels_last=True, sm_limit=sms, own_kernels=True)
    assert proc.describe()["kernels"] == "codl"
    got = ReferenceRunner(graph, proc)(x.cuda())
    torch.cuda.synchronize()
    with torch.no_grad():
        expected = module(x)
    expected = [expected] if isinstance(expected, torch.Tensor) else list(expected)
    assert calls and set(calls) == {sms or torch.cuda.get_device_properties(0).multi_processor_count}
    assert proc.backend.gpu_units == calls[0]  # the SMs chosen with the processor, when the runner was built
    err, tol = compare(got, expected)["rel_l2_error"], tolerance(proc)
    assert err < tol, f"{name}: relative error {err:.2e} >= {tol:.0e}"


@pytest.mark.parametrize("pads,stride,groups", [((1, 1, 1, 1), 1, 1), ((0, 1, 2, 1), 2, 1), ((2, 2, 0, 2), 1, 1),
                                                ((1, 1, 0, 1), 1, 48), ((0, 2, 2, 2), 2, 48)])
def test_own_conv_kernel_matches_padded_library_conv(pads: tuple, stride: int, groups: int) -> None:
    import torch.nn.functional as F

    from codl.ops import own_kernels

    torch.manual_seed(0)
    x = torch.randn(2, 48, 19, 17, device="cuda").half().contiguous(memory_format=torch.channels_last)
    k = 5 if pads[0] == 2 or pads[2] == 2 else 3
    w = torch.randn(48, 48 // groups, k, k, device="cuda").half() / k
    b = torch.randn(48, device="cuda").half()
    pt, pl, pb, pr = pads
    ref = F.conv2d(F.pad(x.float(), (pl, pr, pt, pb)), w.float(), b.float(), stride, 0, 1, groups)
    for rows in (slice(None), slice(5, 12)):  # whole input, and a row slice (a view, as a row share reads)
        r = ref if rows == slice(None) else F.conv2d(F.pad(x[:, :, rows].float(), (pl, pr, pt, pb)), w.float(), b.float(),
                                                      stride, 0, 1, groups)
        got = own_kernels.conv2d(x[:, :, rows], w, b, (stride, stride), (pt, pl), (1, 1), groups, tuple(r.shape[2:]), 132)
        assert got.is_contiguous(memory_format=torch.channels_last)
        assert ((got.float() - r).norm() / r.norm()).item() < 5e-3
