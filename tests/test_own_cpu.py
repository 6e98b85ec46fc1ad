"""codl's own CPU conv path (codl.ops.own_cpu): it computes what F.conv2d computes, runs
the GEMMs the latency model counts, and a CPU processor with own kernels uses it."""

from __future__ import annotations

import json
import platform

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from codl.ops import own_cpu
from codl.predict import AnalyticPredictor, CpuParams, feature_row, load_predictor
from codl.predict.features import (
    CPU_OWN_FEATURES,
    feature_names,
    own_cpu_blocks,
    own_cpu_direct,
    regime,
)
from codl.processors import Processor
from codl.profile import Sample
from codl.runtime import ReferenceRunner
from codl.runtime.reference import to_processor

OWN = CpuParams(threads=1, own=True)

# (batch, C, H, W, OC, kernel, stride, (top, left, bottom, right), dilation, bias)
CASES = [
    (1, 16, 20, 24, 24, 3, 1, (1, 1, 1, 1), 1, True),
    (2, 8, 9, 7, 32, 3, 2, (0, 1, 2, 1), 1, False),   # uneven padding, batch 2
    (1, 5, 6, 6, 7, 1, 1, (0, 0, 0, 0), 1, True),     # 1x1: the GEMM on the input itself
    (3, 6, 5, 5, 9, 1, 1, (0, 0, 0, 0), 1, False),
    (1, 12, 9, 9, 16, 1, 2, (0, 0, 0, 0), 1, True),   # 1x1 of stride 2: an im2col gather
    (1, 4, 12, 10, 6, 3, 1, (2, 2, 2, 2), 2, True),   # dilation 2
    (1, 3, 40, 40, 8, 5, 2, (2, 2, 1, 1), 1, True),
    (1, 64, 30, 30, 96, 3, 1, (1, 1, 1, 1), 1, True),
]


@pytest.mark.parametrize("block_bytes", [own_cpu.BLOCK_BYTES, 4096])  # one block, and many (and a last short one)
@pytest.mark.parametrize("case", CASES)
def test_conv_matches_pytorch(case: tuple, block_bytes: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(own_cpu, "BLOCK_BYTES", block_bytes)
    n, c, h, w, oc, k, s, pads, d, bias = case
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, c, h, w, generator=g).contiguous(memory_format=torch.channels_last)
    wt = torch.randn(oc, c, k, k, generator=g).contiguous(memory_format=torch.channels_last)
    b = torch.randn(oc, generator=g) if bias else None
    pt, pl, pb, pr = pads
    expected = F.conv2d(F.pad(x, (pl, pr, pt, pb)), wt, b, s, 0, d)
    got = own_cpu.conv2d(x, wt, b, (s, s), pads, (d, d))
    assert got.shape == expected.shape and got.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)


def test_contiguous_inputs_work_too() -> None:
    x, w = torch.randn(1, 8, 10, 10), torch.randn(4, 8, 3, 3)
    torch.testing.assert_close(own_cpu.conv2d(x, w, None, (1, 1), (1, 1, 1, 1), (1, 1)), F.conv2d(x, w, None, 1, 1),
                               rtol=1e-4, atol=1e-4)


def test_block_rows() -> None:
    assert own_cpu.block_rows(100, 10, 9, 4) == 100  # 36 KB of columns: all rows at once
    assert own_cpu.block_rows(100, 1000, 4608, 4) == max(1, own_cpu.BLOCK_BYTES // (1000 * 4608 * 4))
    assert own_cpu.block_rows(5, 10 ** 6, 10 ** 4, 4) == 1  # at least a row


def _gemm_calls(fn) -> int:
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        fn()
    return sum(e.count for e in prof.key_averages() if e.key in ("aten::mm", "aten::addmm"))


@pytest.mark.parametrize("sample", [
    Sample("conv", 16, 24, 20, 20, 3, 1, 1, 1, 1),
    Sample("conv", 64, 32, 48, 40, 3, 1, 0, 1, 1),   # a row share: padded below only
    Sample("conv", 32, 40, 30, 30, 1),               # 1x1
    Sample("conv", 32, 40, 30, 30, 1, 1, 1, 0, 1),   # 1x1 with padding: one GEMM on the padded copy
    Sample("conv", 32, 40, 30, 30, 1, 2),            # 1x1 of stride 2
    Sample("conv", 256, 64, 40, 40, 5, 1, 2, 2, 2),  # many blocks
])
def test_processor_runs_the_gemms_the_model_counts(sample: Sample, monkeypatch: pytest.MonkeyPatch) -> None:
    """A CPU processor with own kernels keeps tensors channels-last, runs convs on
    codl's path (same result as the library), and calls as many GEMMs as the latency
    model's features count (torch.profiler)."""
    monkeypatch.setattr(own_cpu, "BLOCK_BYTES", 256 << 10)
    own, library = Processor.parse("cpu", 1, own_kernels=True), Processor.parse("cpu", 1)
    assert own.channels_last and own.describe()["kernels"] == "codl" and "kernels" not in library.describe()
    if platform.libc_ver()[0] == "glibc":  # large outputs reuse mapped memory instead of fresh pages
        assert own.describe()["freed_memory"] == "kept"
    graph = sample.graph()
    x = torch.randn(graph.inputs[0].shape)
    run_own, run_lib = ReferenceRunner(graph, own), ReferenceRunner(graph, library)
    torch.testing.assert_close(run_own(to_processor(x, own))[0], run_lib(x)[0], rtol=1e-3, atol=1e-3)
    config = sample.config()
    expected = sum(count for _, count in own_cpu_blocks(config, OWN))
    assert _gemm_calls(lambda: run_own(to_processor(x, own))) == expected
    assert regime(config, OWN).startswith("cpu_own_1x1" if own_cpu_direct(config) else "cpu_own_i2c")
    f = dict(zip(CPU_OWN_FEATURES, feature_row(config, OWN)))
    assert f["blocks"] == pytest.approx((expected - 1) / 1e6)


def test_own_cpu_processor_is_channels_last_and_parsing_has_no_side_effects(monkeypatch: pytest.MonkeyPatch) -> None:
    """Own CPU kernels make a processor channels-last by default and refuse NCHW;
    glibc's freed-memory setting is applied when the processor is activated, not parsed."""
    from codl.errors import CodlError

    calls = []
    monkeypatch.setattr(own_cpu, "keep_freed_memory", lambda: calls.append(1) or True)
    own = Processor.parse("cpu", 1, own_kernels=True)
    assert own.channels_last and Processor.parse("cpu", 1, channels_last=True, own_kernels=True) == own
    assert not Processor.parse("cpu", 1).channels_last
    with pytest.raises(CodlError, match="channels-last"):
        Processor.parse("cpu", 1, channels_last=False, own_kernels=True)
    assert Processor.from_description(own.describe()) == own
    assert calls == [1]  # describe asks whether it applies; parse did not call it
    threads = torch.get_num_threads()
    try:
        own.activate()
    finally:
        torch.set_num_threads(threads)
    assert calls == [1, 1]


def test_own_regimes_and_features() -> None:
    assert feature_names("conv", OWN) == feature_names("linear", OWN) == CPU_OWN_FEATURES
    c = Sample("conv", 8, 48, 8, 8, 3, 1, 1, 1, 1).config()  # 64 pixels x 48 channels x 72
    f = dict(zip(CPU_OWN_FEATURES, feature_row(c, OWN)))
    assert regime(c, OWN) == "cpu_own_i2c"
    assert f["macs"] == pytest.approx(64 * 48 * 72 / 1e6) and f["copy"] == pytest.approx(64 * 72 / 1e6)
    assert f["pad"] == pytest.approx(8 * 10 * 10 / 1e6) and f["runs"] == pytest.approx(64 * 3 / 1e6)
    assert f["tail_rows"] == 0 and f["blocks"] == 0
    assert regime(Sample("conv", 8, 48, 4, 4, 3, 1, 1, 1, 1).config(), OWN) == "cpu_own_i2c_small"  # 16 pixels
    assert regime(Sample("conv", 8, 20, 30, 30, 1).config(), OWN) == "cpu_own_1x1"
    assert regime(Sample("conv", 8, 12, 30, 30, 1).config(), OWN) == "cpu_own_1x1_narrow"  # under 16 channels
    assert regime(Sample("conv", 8, 8, 30, 30, 3, 1, 1, 1, 1, 8).config(), OWN) == "cpu_dnn_group"  # grouped: oneDNN
    assert regime(Sample("linear", rows=40, fin=64, fout=64).config(), OWN) == "cpu_gemm"  # linears: MKL as before


def test_analytic_model_recovers_own_path_unit_costs() -> None:
    truth = np.linspace(1e-3, 9e-3, len(CPU_OWN_FEATURES))
    rng = np.random.default_rng(3)

    def convs(n: int) -> list:
        out = []
        for _ in range(n):
            k = int(rng.choice([1, 3, 5]))
            h = int(rng.integers(k, 80))
            out.append(Sample("conv", int(rng.choice([3, 16, 64, 200])), int(rng.integers(8, 400)), h, h, k,
                              int(rng.choice([1, 2])), k // 2, k // 2, k // 2).config())
        return out

    configs = convs(1500)
    times = [float(np.dot(feature_row(c, OWN), truth)) for c in configs]
    model = AnalyticPredictor("conv", OWN).fit(configs, times)
    assert set(model.models_) <= {f"cpu_own_{kind}{size}" for kind in ("1x1", "i2c") for size in ("", "_small", "_narrow")}
    held_out = convs(300)
    expected = [np.dot(feature_row(c, OWN), truth) for c in held_out]
    np.testing.assert_allclose(model.predict(held_out), expected, rtol=2e-2)
    again = load_predictor(json.loads(json.dumps(model.to_json())))
    assert again.hw == OWN
    np.testing.assert_allclose(again.predict(held_out), model.predict(held_out))
