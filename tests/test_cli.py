"""The command line: models, inspect and run, on built-in models and ONNX files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from codl import zoo
from codl.cli import main
from codl.cli.parser import build_parser
from codl.frontends import export_onnx


def test_run_builtin_model_prints_latency_and_writes_json(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "r.json"
    rc = main(["run", "yolov2", "--input-size", "64", "64", "--width", "0.25", "-n", "3", "--warmup", "1",
               "--threads", "1", "--json", str(out)])
    text = capsys.readouterr()
    assert rc == 0
    for key in ("median", "mean", "min", "max", "p90"):
        assert key in text.out
    assert "check      vs the PyTorch module" in text.out and "OK" in text.out
    assert "timing 3 runs" in text.err  # progress goes to stderr
    data = json.loads(out.read_text())
    assert data["schema_version"] == 1 and data["latency_source"] == "measured"
    assert len(data["samples_ms"]) == 3 and data["latency_ms"]["min_ms"] <= data["latency_ms"]["median_ms"]
    assert data["processor"]["threads"] == 1 and "cpu" in data["fingerprint"]


def test_run_onnx_file_in_bf16(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    module, x = zoo.build("mobilenetv2", (64, 64), width=0.5)
    path = tmp_path / "m.onnx"
    path.write_bytes(export_onnx(module, x))
    assert main(["run", str(path), "--dtype", "bf16", "--channels-last", "-n", "2", "--warmup", "0"]) == 0
    out = capsys.readouterr().out
    assert "bfloat16 channels-last" in out and "vs onnxruntime (CPU)" in out  # onnxruntime is a test extra


def test_inspect_lists_every_op(capsys: pytest.CaptureFixture) -> None:
    assert main(["inspect", "vgg16", "--input-size", "32", "32", "--width", "0.25"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("vgg16 (32x32, width 0.25): 37 ops")
    assert sum(" Conv " in line for line in lines) == 13
    assert sum(" Linear " in line for line in lines) == 3


def test_models_table(capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(zoo, "graph", lambda *a, **k: pytest.fail("codl models must not build graphs"))
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    for name in zoo.MODELS:
        assert name in out
    assert "[CoDL eval]" in out


def test_errors_are_one_line_with_status_2(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    bad = tmp_path / "bad.onnx"
    bad.write_text("garbage" * 50)
    assert main(["run", str(bad)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("codl: error: ") and "not a valid ONNX model" in err[-1]
    assert main(["run", "nosuchmodel"]) == 2
    assert "built-in models: vgg16" in capsys.readouterr().err
    assert main(["run", "vgg16", "-d", "tpu"]) == 2
    assert "unknown device 'tpu'" in capsys.readouterr().err


def test_bench_overhead_on_cpu(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "o.json"
    assert main(["bench", "overhead", "--models", "mobilenetv2", "--input-size", "32", "32", "--width", "0.25",
                 "-n", "2", "--rounds", "1", "--json", str(out)]) == 0
    assert "mobilenetv2  cpu" in capsys.readouterr().out
    row = json.loads(out.read_text())["results"][0]
    assert set(row["latency_ms"]) == {"reference", "reference_io", "session"} and row["session_over_reference"] > 0


def test_sm_limit_is_refused_off_cuda(capsys: pytest.CaptureFixture) -> None:
    assert main(["run", "vgg16", "-d", "cpu", "--sm-limit", "8"]) == 2
    assert "SM limit applies to cuda devices only" in capsys.readouterr().err


def test_autotune_is_refused_off_cuda(capsys: pytest.CaptureFixture) -> None:
    assert main(["run", "vgg16", "-d", "cpu", "--autotune"]) == 2
    assert "--autotune applies to cuda devices only" in capsys.readouterr().err


def test_own_kernels_are_refused_off_cpu_and_cuda(capsys: pytest.CaptureFixture) -> None:
    assert main(["run", "vgg16", "-d", "mps", "--own-kernels"]) == 2
    assert "--own-kernels applies to the cpu and to cuda devices with Triton only: codl has no own kernels for mps" \
        in capsys.readouterr().err


def test_own_kernels_for_one_processor_of_a_pair() -> None:
    from codl.errors import CodlError
    from codl.processors.base import default_pair

    assert [p.own_kernels for p in default_pair("cpu,cpu", own_kernels="gpu")] == [False, True]
    assert [p.own_kernels for p in default_pair("cpu,cpu", own_kernels="cpu")] == [True, False]
    assert [p.own_kernels for p in default_pair("cpu,cpu", own_kernels=True)] == [True, True]
    assert [p.own_kernels for p in default_pair("cpu,cpu", own_kernels="both")] == [True, True]
    assert [p.own_kernels for p in default_pair("cpu,cpu")] == [False, False]
    with pytest.raises(CodlError, match="give one of both, cpu, gpu"):
        default_pair("cpu,cpu", own_kernels="npu")
    args = build_parser().parse_args(["plan", "vgg16", "--own-kernels", "--native"])
    assert args.own_kernels == "both"
    args = build_parser().parse_args(["bench", "model", "vgg16", "--own-kernels", "gpu"])
    assert args.own_kernels == "gpu"


def test_trace_writes_a_perfetto_trace_of_a_plan(tmp_path, capsys) -> None:  # noqa: ANN001
    import json

    from codl import zoo
    from codl.frontends import from_torch
    from codl.plan import random_plan

    module, x = zoo.build("vgg16", (32, 32), 0.25)
    graph = from_torch(module, x, name="vgg16")
    plan_file, out = tmp_path / "plan.json", tmp_path / "run.json"
    plan_file.write_text(json.dumps(random_plan(graph, 2, whole_share=0.0).to_json()))
    assert main(["trace", "vgg16", "--input-size", "32", "32", "--width", "0.25", "-d", "cpu,cpu",
                 "--plan", str(plan_file), "-o", str(out), "--warmup", "1"]) == 0
    assert "busy ms" in capsys.readouterr().out
    events = json.loads(out.read_text())["traceEvents"]
    assert any(e["ph"] == "X" for e in events) and any(e["ph"] == "s" for e in events)
    plan_file.write_text("{}")
    assert main(["trace", "vgg16", "--plan", str(plan_file)]) == 2
    assert "not a codl plan" in capsys.readouterr().err


def test_bench_exchange_without_cuda_is_one_line(capsys) -> None:  # noqa: ANN001
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    assert main(["bench", "exchange"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("codl: error:") and "needs a CUDA GPU" in err and "\n" not in err


def test_options_are_checked_before_any_work(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    module, x = zoo.build("vgg16", (32, 32), width=0.25)
    onnx_file = tmp_path / "m.onnx"
    onnx_file.write_bytes(export_onnx(module, x))
    cases = [
        (["run", "vgg16", "-n", "0"], "-n must be >= 1"),
        (["run", "vgg16", "--warmup", "-1"], "--warmup >= 0"),
        (["run", "vgg16", "--json", str(tmp_path / "no" / "r.json")], "does not exist"),
        (["run", str(onnx_file), "--input-size", "64", "64"], "--input-size and --width apply to built-in models"),
        (["run", "vgg16", "--input-shape", "x=1x3x32x32"], "--input-shape applies to ONNX files"),
        (["run", str(onnx_file), "--input-shape", "input=1x3x64x64"], "must keep its rank and its 4 static"),
    ]
    for argv, message in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err.strip().splitlines()
        assert err[-1].startswith("codl: error: ") and message in err[-1], (argv, err[-1])


def test_profile_of_a_missing_device_fails_before_profiling_the_cpu(tmp_path: Path, capsys: pytest.CaptureFixture,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    if torch.cuda.is_available():
        pytest.skip("needs a machine without CUDA")
    import codl.profile

    monkeypatch.setattr(codl.profile, "run_profile", lambda *a, **k: pytest.fail("profiled before checking cuda"))
    assert main(["profile", "-d", "cpu,cuda", "--out", str(tmp_path), "--budget", "0.01"]) == 2
    assert "cuda:0 is not available" in capsys.readouterr().err


def test_python_dash_m_codl_is_the_codl_command() -> None:
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "codl", "models"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "vgg16" in out.stdout
