"""The CPU paths' latency model: it names the routine PyTorch really runs, counts the
kernel taps a library skips over padding, recovers known unit costs from data made by
its own formula, and round-trips through JSON."""

from __future__ import annotations

import itertools
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from codl.errors import CodlError
from codl.predict import AnalyticPredictor, CpuParams, feature_row, load_predictor
from codl.predict.evaluate import CACHE_CANDIDATES, hardware_candidates
from codl.predict.features import (
    CPU_FEATURES,
    cpu_path,
    feature_names,
    native_conv,
    regime,
    taps_inside,
)
from codl.predict.hardware import hardware_from_json
from codl.processors import Processor, base
from codl.processors.base import cpu_cache_bytes
from codl.profile import Sample

CPU = CpuParams(threads=1)


def test_taps_inside_counts_what_a_loop_counts() -> None:
    for size, k, s, p, d in itertools.product(range(1, 9), range(1, 8), range(1, 4), range(4), range(1, 3)):
        out = (size + 2 * p - d * (k - 1) - 1) // s + 1
        if out > 0:
            loop = sum(1 for o in range(out) for j in range(k) if 0 <= o * s - p + j * d < size)
            assert taps_inside(size, k, s, p, d, out) == loop


@pytest.mark.parametrize("sample", [
    Sample("conv", 16, 32, 12, 12, 3, 1, 1, 1, 1),   # whole, even padding
    Sample("conv", 8, 16, 7, 10, 3, 2, 0, 1, 1),     # a row share: padding below only (symmetric, rows dropped)
    Sample("conv", 8, 16, 5, 10, 5, 2, 1, 0, 2),     # uneven padding that cannot be made symmetric: a padded copy
])
def test_config_records_the_library_call(sample: Sample) -> None:
    """x_elems, out_rows and valid_taps describe the conv call the library gets, as
    codl.ops.conv makes it: checked against the call's own input and a tap loop."""
    c = sample.config()
    pads = (sample.pad_top, sample.pad, sample.pad_bottom, sample.pad)
    from codl.ops.conv import symmetric_padding

    rows, cols = sample.h, sample.w
    if pads[0] != pads[2]:
        sym = symmetric_padding(pads, (sample.s, sample.s))
        if sym is None:
            rows, cols, pads = rows + pads[0] + pads[2], cols + 2 * sample.pad, (0, 0, 0, 0)
        else:
            (ph, pw), _ = sym
            pads = (ph, pw, ph, pw)
    y = F.conv2d(torch.zeros(1, sample.ic, rows, cols), torch.zeros(sample.oc, sample.ic, sample.k, sample.k),
                 stride=sample.s, padding=(pads[0], pads[1]))
    assert c.x_elems == sample.ic * rows * cols and c.out_rows == y.shape[2]
    inside = sum(1 for o in range(y.shape[2]) for q in range(y.shape[3]) for i in range(sample.k) for j in range(sample.k)
                 if 0 <= o * sample.s - pads[0] + i < rows and 0 <= q * sample.s - pads[1] + j < cols)
    assert c.valid_taps == inside


def _backend(x: torch.Tensor, w: torch.Tensor, stride: int, pad: int, groups: int) -> str:
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        F.conv2d(x, w, None, stride, pad, 1, groups)
    names = {e.key for e in prof.key_averages()}
    if "aten::mkldnn_convolution" in names:
        return "onednn"
    assert "aten::_slow_conv2d_forward" in names, names
    return "native"


def test_native_conv_rule_matches_what_pytorch_runs() -> None:
    """The regime names the conv routine PyTorch dispatches to on this CPU (float32,
    batch 1): its own im2col+GEMM path or oneDNN, for one thread and for two."""
    if not torch.backends.mkldnn.is_available():
        pytest.skip("this PyTorch has no oneDNN")
    before = torch.get_num_threads()
    cases = [(16, 8, 131, 1, 1, 1), (72, 64, 50, 1, 2, 1), (3, 8, 12, 3, 1, 1), (4, 16, 80, 3, 2, 1),
             (48, 64, 5, 7, 2, 1), (64, 64, 17, 3, 1, 1), (64, 64, 18, 3, 1, 1), (32, 32, 20, 3, 1, 32),
             (8, 16, 30, 5, 1, 1), (256, 64, 9, 1, 1, 1)]
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            hw = CpuParams(threads=threads)
            for ic, oc, h, k, s, g in cases:
                sample = Sample("conv", ic, oc, h, h, k, s, k // 2, k // 2, k // 2, g)
                x, w = torch.randn(1, ic, h, h), torch.randn(oc, ic // g, k, k)
                expected = _backend(x, w, s, k // 2, g)
                assert ("native" if native_conv(sample.config(), hw) else "onednn") == expected, (threads, sample)
    finally:
        torch.set_num_threads(before)
    assert not native_conv(Sample("conv", 16, 8, 131, 131, 1).config(), CpuParams(threads=1, native_conv=False))


def test_cpu_paths_name_regimes() -> None:
    lin = lambda m: Sample("linear", rows=m, fin=256, fout=512).config()  # noqa: E731
    assert [cpu_path(lin(m), CPU) for m in (1, 2, 3, 4, 31, 32)] == ["cpu_gemv", "cpu_gemm_tiny", "cpu_gemm_tiny",
                                                                   "cpu_gemm_small", "cpu_gemm_small", "cpu_gemm"]
    conv = lambda *a: Sample("conv", *a).config()  # noqa: E731
    assert regime(conv(64, 64, 56, 56, 1), CPU) == "cpu_gemm1x1"
    assert regime(conv(64, 16, 56, 56, 1), CPU) == "cpu_gemm1x1_small"
    assert regime(conv(64, 64, 8, 8, 3, 1, 1, 1, 1), CPU) == "cpu_im2col"
    assert regime(conv(64, 64, 56, 56, 3, 1, 1, 1, 1), CPU) == "cpu_dnn"
    assert regime(conv(3, 64, 112, 112, 3, 1, 1, 1, 1), CPU) == "cpu_dnn_small_ic"  # 37632 input elements
    assert regime(conv(64, 64, 56, 56, 1, 2), CPU) == "cpu_dnn1x1"
    assert regime(conv(64, 64, 56, 56, 3, 1, 1, 1, 1, 64), CPU) == "cpu_dnn_group"
    assert feature_names("conv", CPU) == CPU_FEATURES


def test_cpu_features_count_the_gemm() -> None:
    f = dict(zip(CPU_FEATURES, feature_row(Sample("linear", rows=7, fin=100, fout=40).config(), CPU)))
    assert f["macs"] == pytest.approx(7 * 48 * 100 / 1e6) and f["tail_macs"] == pytest.approx(7 * 100 * 8 / 1e6)
    assert f["odd_rows"] == pytest.approx(40 * 100 / 1e6) and f["scalar_macs"] == 0.0  # 7 rows: odd; 40 = 4 * 10
    assert f["b_l2"] == pytest.approx(40 * 100 / 1e6) and f["b_l3"] == f["b_dram"] == 0.0  # 16 KB: in L2
    big = dict(zip(CPU_FEATURES, feature_row(Sample("linear", rows=1, fin=4096, fout=4096).config(), CPU)))
    assert big["b_dram"] == pytest.approx(4096 * 4096 / 1e6) and big["b_l2"] == big["b_l3"] == 0.0  # 64 MB
    mid = dict(zip(CPU_FEATURES, feature_row(Sample("linear", rows=1, fin=4096, fout=1536).config(), CPU)))  # 25 MB
    assert mid["b_l3"] > 0 and mid["b_dram"] > 0 and mid["b_l3"] + mid["b_dram"] == pytest.approx(4096 * 1536 / 1e6)
    # a conv on its own path: out (channels x pixels) = weights @ im2col columns
    c = Sample("conv", 8, 48, 8, 8, 3, 1, 1, 1, 1).config()
    f = dict(zip(CPU_FEATURES, feature_row(c, CPU)))
    assert f["copy"] == pytest.approx(72 * 64 / 1e6) and f["macs"] == pytest.approx(48 * 64 * 72 / 1e6)
    # oneDNN: only the taps inside the input, channels in blocks of 16
    c = Sample("conv", 24, 40, 4, 4, 7, 1, 3, 3, 3).config()
    f = dict(zip(CPU_FEATURES, feature_row(c, CPU)))
    assert regime(c, CPU) == "cpu_dnn" and f["macs"] == pytest.approx(c.valid_taps * 48 * 32 / 1e6)
    assert c.valid_taps == 16 * 16 < 16 * 49


def random_cpu_ops(n: int, seed: int) -> list:
    rng = np.random.default_rng(seed)
    out = []
    while len(out) < n:
        if rng.random() < 0.5:
            out.append(Sample("linear", rows=int(rng.integers(1, 600)), fin=int(rng.integers(8, 3000)),
                              fout=int(rng.integers(8, 3000))).config())
        else:
            k = int(rng.choice([1, 3, 5]))
            h = int(rng.integers(k, 64))
            out.append(Sample("conv", int(rng.choice([3, 16, 64, 200])), int(rng.integers(8, 400)), h, h, k, 1,
                              k // 2, k // 2, k // 2).config())
    return out


@pytest.mark.parametrize("family", ["linear", "conv"])
def test_analytic_model_on_cpu_paths_recovers_unit_costs(family: str) -> None:
    truth = np.linspace(1e-3, 9e-3, len(CPU_FEATURES))  # ms per unit of each feature
    truth[-1] = 0.01  # dispatch
    configs = [c for c in random_cpu_ops(1200, 4) if c.family == family]
    times = [float(np.dot(feature_row(c, CPU), truth)) for c in configs]
    model = AnalyticPredictor(family, CPU).fit(configs, times)
    assert model.models_ and all(name.startswith("cpu_") for name in model.models_)
    held_out = [c for c in random_cpu_ops(300, 5) if c.family == family]
    expected = [np.dot(feature_row(c, CPU), truth) for c in held_out]
    np.testing.assert_allclose(model.predict(held_out), expected, rtol=2e-2)  # coefficients kept to 3 digits
    data = json.loads(json.dumps(model.to_json()))
    again = load_predictor(data)
    assert again.hw == CPU
    np.testing.assert_allclose(again.predict(held_out), model.predict(held_out))
    first = next(iter(data["coef_us"].values()))
    assert len(first) == len(CPU_FEATURES) + 1  # [L3 in KiB, *coefficients]: one routine, no gate
    assert first[0] == CPU.l3_bytes >> 10  # the data were made with all of the L3


def test_analytic_model_on_cpu_paths_finds_the_l3_its_routines_see() -> None:
    """Times made with a routine seeing half the recorded L3: the fit finds that L3
    (and predicts as the truth does); a model saved in the earlier format fails clearly."""
    truth = np.linspace(1e-3, 9e-3, len(CPU_FEATURES))
    truth[-1] = 0.01
    half = replace(CPU, l3_bytes=CPU.l3_bytes // 2)
    configs = [c for c in random_cpu_ops(1600, 6) if c.family == "linear"]
    times = [float(np.dot(feature_row(c, half), truth)) for c in configs]
    model = AnalyticPredictor("linear", CPU).fit(configs, times)
    assert model.models_["cpu_gemm"].hw == half and model.to_json()["coef_us"]["cpu_gemm"][0] == half.l3_bytes >> 10
    held_out = [c for c in random_cpu_ops(300, 7) if c.family == "linear"]
    np.testing.assert_allclose(model.predict(held_out), [np.dot(feature_row(c, half), truth) for c in held_out],
                               rtol=2e-2)
    data = json.loads(json.dumps(model.to_json()))
    with pytest.raises(CodlError, match="analytic predictor format 1 is not the supported 2: refit it"):
        load_predictor({**data, "version": 1})


def test_cpu_hardware_candidates_and_caches() -> None:
    recorded = {"device": "cpu", "dtype": "bfloat16", "threads": 16, "l2_bytes": 2 << 20, "l3_bytes": 105 << 20}
    (hw,) = hardware_candidates(recorded)
    assert (hw.l2_bytes, hw.l3_bytes, hw.elem_bytes, hw.native_conv, hw.units) == (2 << 20, 105 << 20, 2, False, 16)
    older = hardware_candidates({"device": "cpu", "dtype": "float32", "threads": 1})  # a profile without its caches
    assert [(h.l2_bytes, h.l3_bytes) for h in older] == list(CACHE_CANDIDATES) and all(h.native_conv for h in older)
    assert hardware_from_json(json.loads(json.dumps(hw.to_json()))) == hw
    (own,) = hardware_candidates({**recorded, "kernels": "codl"})  # a profile of codl's own CPU convs
    assert own.own and not hw.own
    assert hardware_from_json(json.loads(json.dumps(own.to_json()))) == own


def fake_sysfs(root: Path, caches: list[tuple[int, str, str]]) -> str:
    """A cpu0/cache tree as Linux lays it out: index<N>/{level,type,size}."""
    for i, (level, kind, size) in enumerate(caches):
        d = root / f"index{i}"
        d.mkdir(parents=True)
        (d / "level").write_text(f"{level}\n")
        (d / "type").write_text(f"{kind}\n")
        (d / "size").write_text(f"{size}\n")
    return str(root)


def test_cpu_caches_are_read_from_sysfs_and_recorded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    epyc = fake_sysfs(tmp_path / "epyc", [(1, "Data", "32K"), (1, "Instruction", "32K"), (2, "Unified", "512K"),
                                          (3, "Unified", "32768K")])
    assert cpu_cache_bytes(epyc) == {"l2_bytes": 512 << 10, "l3_bytes": 32 << 20}
    big = fake_sysfs(tmp_path / "big", [(1, "Data", "48K"), (2, "Unified", "2M"), (3, "Unified", "105M")])
    assert cpu_cache_bytes(big) == {"l2_bytes": 2 << 20, "l3_bytes": 105 << 20}
    # no L3 reported, an unreadable size, or no tree at all: nothing, and profiles fall back to CACHE_CANDIDATES
    assert cpu_cache_bytes(fake_sysfs(tmp_path / "l2", [(1, "Data", "32K"), (2, "Unified", "1024K")])) == {}
    assert cpu_cache_bytes(fake_sysfs(tmp_path / "odd", [(2, "Unified", "1024K"), (3, "Unified", "lots")])) == {}
    assert cpu_cache_bytes(str(tmp_path / "missing")) == {}
    # what a CPU processor records is what the latency model then assumes
    monkeypatch.setattr(base, "cpu_cache_bytes", lambda: cpu_cache_bytes(big))
    described = Processor.parse("cpu", 1).describe()
    assert (described["l2_bytes"], described["l3_bytes"]) == (2 << 20, 105 << 20)
    (hw,) = hardware_candidates(described)
    assert (hw.l2_bytes, hw.l3_bytes) == (2 << 20, 105 << 20)
    monkeypatch.setattr(base, "cpu_cache_bytes", lambda: {})
    described = Processor.parse("cpu", 1).describe()
    assert "l3_bytes" not in described and len(hardware_candidates(described)) == len(CACHE_CANDIDATES)
