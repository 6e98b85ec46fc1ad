"""The profiler: samples cover whole and partial ops, measurement is resumable and stops
at its budget, profiles refuse to mix machines or settings, and the evaluation command
reports every predictor the same way."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest

from codl import zoo
from codl.cli import main
from codl.errors import CodlError
from codl.ir.verify import verify_graph
from codl.processors import Processor
from codl.bench.run import time_back_to_back
from codl.profile.sampling import CHANNEL_GRID
from codl.profile import (Sample, conv_parts, linear_parts, load_passes, load_profile, model_samples, noise_floor,
                          perturbed_samples, profile_path, random_samples, run_profile)

CPU = Processor.parse("cpu", threads=1)


def test_samples_are_valid_ops_whole_and_partial() -> None:
    base = Sample("conv", 16, 32, 20, 20, 3, 2, 1, 1, 1)
    parts = conv_parts(base)
    assert parts[0] == base and len(parts) > 5
    assert any(p.oc < base.oc for p in parts) and any(p.h < base.h for p in parts)
    for p in parts + linear_parts(Sample("linear", rows=10, fin=8, fout=12)):
        verify_graph(p.graph())
        structure = p.graph(seed=None)  # shapes only
        assert structure.constants["w"].strides == (0,) * structure.constants["w"].ndim
        assert p.config().macs > 0
    first_rows = [p for p in parts if p.h < base.h]
    assert all(p.pad_top == 1 and p.pad_bottom == 0 for p in first_rows)  # the top share keeps the top padding


def test_model_and_random_samples() -> None:
    samples = model_samples(zoo.graph("vgg16", (32, 32), width=0.25))
    assert sum(s.family == "conv" for s in samples) == 13 and sum(s.family == "linear" for s in samples) == 3
    for family in ("conv", "linear"):
        drawn = random_samples(family, 30, seed=1)
        assert len(drawn) == 30 and all(s.family == family for s in drawn)
        assert drawn == random_samples(family, 30, seed=1)  # seeded
        for s in drawn:  # channel counts on the grid (a first layer's 3 or 4 inputs aside)
            assert all(c % CHANNEL_GRID == 0 for c in ((s.oc,) if family == "conv" else (s.fin, s.fout)))
            assert family == "linear" or s.ic % CHANNEL_GRID == 0 or s.ic in (3, 4)
            assert s.macs <= 2e9
        parts = [p for s in drawn for p in (conv_parts(s) if family == "conv" else linear_parts(s))]
        assert all(p.oc % CHANNEL_GRID == 0 if family == "conv" else p.fout % CHANNEL_GRID == 0 for p in parts)
        assert len(parts) == len(set(parts))


def test_perturbed_samples_stay_near_the_model_ops() -> None:
    bases = [Sample("conv", 3, 32, 224, 224, 3, 2, 1, 1, 1), Sample("conv", 96, 96, 56, 56, 3, 1, 1, 1, 1, 96),
             Sample("conv", 64, 256, 56, 56, 1, 1, 0, 0, 0), Sample("linear", rows=197, fin=768, fout=3072)]
    near = perturbed_samples(bases, 5, seed=3)
    assert near == perturbed_samples(bases, 5, seed=3) and len(near) == 20 and near != perturbed_samples(bases, 5, 4)
    for i, s in enumerate(near):
        base = bases[i // 5]
        verify_graph(s.graph(seed=None))
        if s.family == "conv":
            assert (s.k, s.s, s.pad, s.g) == (base.k, base.s, base.pad, base.g)
            assert base.h / 2 - 1 <= s.h <= base.h * 2 + 1
            if base.g > 1 or base.ic < CHANNEL_GRID:  # depthwise channels and a first layer's inputs kept
                assert s.ic == base.ic and (base.g == 1 or s.oc == base.oc)
            assert s.oc % CHANNEL_GRID == 0 and base.oc / 1.5 <= s.oc <= base.oc * 1.5
        else:
            assert base.rows / 4 - 1 <= s.rows <= base.rows * 4 + 1 and s.fin % CHANNEL_GRID == 0


def small_pairs() -> list[tuple[Sample, Sample]]:
    bases = [Sample("conv", 4, 8, 12, 12, 3, 1, 1, 1, 1), Sample("linear", rows=6, fin=16, fout=8)]
    return [(b, p) for b in bases for p in (conv_parts(b) if b.family == "conv" else linear_parts(b))]


def test_profile_resumes_and_respects_the_budget(tmp_path: Path) -> None:
    path = profile_path(CPU, tmp_path)
    pairs = small_pairs()
    assert run_profile(CPU, pairs, path, budget_s=0.0, repeats=2, warmup=0, progress=False) == 0
    first = run_profile(CPU, pairs[:5], path, budget_s=60, repeats=2, warmup=0, passes=1, progress=False)
    rest = run_profile(CPU, pairs, path, budget_s=60, repeats=2, warmup=0, passes=1, progress=False)
    assert first == 5 and rest == len(pairs) - 5
    rows = load_profile(path)
    assert len(rows) == len(pairs) and all(ms > 0 for _, _, ms in rows)
    assert {s.key for _, s, _ in rows} == {p.key for _, p in pairs}
    assert noise_floor(path) == {}  # one pass: nothing to compare
    other = Sample("conv", 4, 16, 12, 12, 3, 1, 1, 1, 1)  # an op whose share is a sample above
    shared = [(other, p) for _, p in pairs if p.family == "conv"][:2]
    assert run_profile(CPU, shared, path, budget_s=60, repeats=1, warmup=0, passes=1, progress=False) == 0
    twice = [(other, pairs[0][1]), (pairs[0][0], pairs[0][1])]  # one sample under two ops, in one run
    fresh = profile_path(CPU, tmp_path / "fresh")
    assert run_profile(CPU, twice, fresh, budget_s=60, repeats=1, warmup=0, passes=2, progress=False) == 2
    # a second pass measures every sample again; the profile keeps both
    assert run_profile(CPU, pairs, path, budget_s=60, repeats=2, warmup=0, passes=2, progress=False) == len(pairs)
    passes = load_passes(path)
    assert len(passes) == len(pairs) and all(len(times) == 2 for _, _, times in passes)
    by_key = {s.key: ms for _, s, ms in load_profile(path)}
    assert all(by_key[s.key] == pytest.approx(sum(t) / 2) for _, s, t in passes)  # median of two
    noise = noise_floor(path)
    assert set(noise) == {"conv", "linear"}
    assert noise["conv"]["samples"] == sum(p.family == "conv" for _, p in pairs)
    assert all(0 <= n["within_5"] <= n["within_10"] <= 1 for n in noise.values())


def test_canary_scales_each_measurement_by_the_machine_speed(tmp_path: Path) -> None:
    """With a canary, each row records a reference GEMM's time and reading the profile
    scales the row's fastest block by the canary's median over the profile over its
    own: a measurement taken while the machine ran at half speed reads as usual."""
    path = profile_path(CPU, tmp_path)
    pairs = small_pairs()[:4]
    assert run_profile(CPU, pairs, path, budget_s=60, repeats=3, warmup=0, passes=1, progress=False, canary=True) == 4
    with pytest.raises(CodlError, match="made with other settings \(canary"):  # no mixing with plain measurements
        run_profile(CPU, pairs, path, budget_s=60, repeats=1, warmup=0, passes=2, progress=False)
    lines = path.read_text().splitlines()
    header = lines[0].split(",")
    rows = [dict(zip(header, line.split(","))) for line in lines[1:]]
    assert all(float(r["canary_ms"]) > 0 for r in rows)
    usual = float(np.median([float(r["canary_ms"]) for r in rows]))
    expected = {r["key"]: float(r["min_ms"]) * usual / float(r["canary_ms"]) for r in rows}
    assert {s.key: t[0] for _, s, t in load_passes(path)} == pytest.approx(expected)
    rows[0]["canary_ms"], rows[0]["min_ms"] = str(float(rows[0]["canary_ms"]) * 2), str(float(rows[0]["min_ms"]) * 2)
    slow = tmp_path / "slow.csv"
    slow.write_text("\n".join([lines[0]] + [",".join(r[h] for h in header) for r in rows]) + "\n")
    usual_now = float(np.median([float(r["canary_ms"]) for r in rows]))  # the median moves with it
    assert {s.key: t[0] for _, s, t in load_passes(slow)}[rows[0]["key"]] == pytest.approx(
        expected[rows[0]["key"]] * usual_now / usual)  # the slow moment itself cancels out
    rows[1]["canary_ms"] = "0"
    slow.write_text("\n".join([lines[0]] + [",".join(r[h] for h in header) for r in rows]) + "\n")
    with pytest.raises(CodlError, match="slow.csv:3: corrupted row"):
        load_passes(slow)
    with pytest.raises(CodlError, match="cpu profiles only"):
        run_profile(_FakeGpu(), pairs, path, budget_s=0, canary=True)  # type: ignore[arg-type]


class _FakeGpu:  # what run_profile looks at first
    class kind:  # noqa: N801
        value = "cuda"


def test_back_to_back_timing_batches_short_calls() -> None:
    calls = []
    samples, batch, clock = time_back_to_back(lambda: calls.append(1), CPU, repeats=3, warmup=1, target_ms=1.0)
    assert clock == "host" and batch > 1 and len(samples) == 3  # a no-op call is batched
    assert len(calls) == 1 + 2 + 3 * batch  # warm-up, two sizing calls, three blocks
    slow = lambda: time.sleep(0.002)  # noqa: E731
    samples, batch, _ = time_back_to_back(slow, CPU, repeats=2, warmup=0, target_ms=1.0)
    assert batch == 1 and all(s >= 2.0 for s in samples)


def test_profiles_refuse_other_settings_and_bad_files(tmp_path: Path) -> None:
    path = profile_path(CPU, tmp_path)
    run_profile(CPU, small_pairs()[:1], path, budget_s=60, repeats=1, warmup=0, progress=False)
    side = path.with_suffix(".json")
    data = json.loads(side.read_text())
    data["fingerprint"]["cpu"] = "Another CPU"
    side.write_text(json.dumps(data))
    with pytest.raises(CodlError, match="measured on another machine or software \\(cpu differ"):
        run_profile(CPU, small_pairs(), path, budget_s=60, repeats=1, warmup=0, progress=False)
    data["processor"]["threads"] = 99
    side.write_text(json.dumps(data))
    with pytest.raises(CodlError, match="made with other settings"):
        run_profile(CPU, small_pairs(), path, budget_s=60, repeats=1, warmup=0, progress=False)
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b\n1,2\n")
    with pytest.raises(CodlError, match="not a codl profile of this version"):
        load_profile(bad)
    lines = path.read_text().splitlines()
    broken = tmp_path / "broken.csv"
    broken.write_text("\n".join(lines[:1] + [lines[1].replace(",conv,", ",conv,x", 1)]) + "\n")
    with pytest.raises(CodlError, match="broken.csv:2: corrupted row"):
        load_profile(broken)
    with pytest.raises(CodlError, match="no such profile"):
        load_profile(tmp_path / "absent.csv")


def test_profile_and_eval_commands(tmp_path: Path, capsys: pytest.CaptureFixture,
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "prof"
    assert main(["profile", "--no-models", "--random", "4", "--budget", "2", "--repeats", "2", "--warmup", "0",
                 "--threads", "1", "--out", str(out)]) == 0
    printed = capsys.readouterr()
    assert "new measurements this run" in printed.out
    assert "noise      conv: two passes of a sample agree within +-10% for" in printed.out  # two passes by default
    import codl.profile

    noisy = {"conv": {"within_5": 0.3, "within_10": 0.5, "samples": 40}}
    monkeypatch.setattr(codl.profile, "noise_floor", lambda path: noisy)  # a host whose speed drifts
    assert main(["profile", "--no-models", "--random", "4", "--budget", "2", "--repeats", "2", "--warmup", "0",
                 "--threads", "1", "--out", str(out)]) == 0
    printed = capsys.readouterr()
    assert "for 50.0% of 40 samples" in printed.out and "warning: cpu" in printed.err and "--canary" in printed.err
    monkeypatch.undo()
    report = tmp_path / "eval.json"
    # the random ops stand in for the built-in models' (whose graphs take half a minute to build)
    import codl.cli

    monkeypatch.setattr(codl.cli, "_model_op_keys", lambda: frozenset(s.key for s in random_samples("conv", 4, 0)))
    assert main(["predictor", "eval", "--threads", "1", "--out", str(out), "--json", str(report)]) == 0
    text = capsys.readouterr().out
    assert "analytic" in text and "flops" in text
    assert "conv     +-10% on the built-in models' own ops" in text and "linear   +-10% on the built" not in text
    conv = json.loads(report.read_text())["results"]["conv"]["analytic"]
    assert conv["within_10_model_ops"] == conv["within_10"] and conv["n_model_ops"] == conv["n_test"]  # all are
    results = json.loads(report.read_text())["results"]
    for family in results.values():
        assert {"analytic", "flops", "forest"} <= set(family)
        for name, metrics in family.items():
            assert 0 <= metrics["within_10"] <= 1 and metrics["n_test"] > 0
            assert name == "forest" or metrics["size_bytes"] < 2048  # the light-weight models stay tiny
    assert "noise floor, conv: two passes" in text  # two passes by default
    models = tmp_path / "models"
    assert main(["predictor", "fit", "--threads", "1", "--out", str(out), "--models", str(models)]) == 0
    assert "analytic predictor fitted on" in capsys.readouterr().out
    from codl.predict import load_predictor
    from codl.profile import load_profile

    rows = load_profile(next(out.glob("*.csv")))
    for family in ("conv", "linear"):
        (saved,) = models.glob(f"*.analytic.{family}.json")
        model = load_predictor(str(saved))
        configs = [s.config() for _, s, _ in rows if s.family == family]
        assert model.family == family and np.all(model.predict(configs) > 0)
    assert main(["profile", "-d", "cpu,cpu", "--no-models", "--random", "4", "--threads", "1", "--out", str(out)]) == 0
    assert capsys.readouterr().out.count("0 new measurements this run") == 2  # each device in turn (done already)
    assert main(["profile", "--ops", "pool", "--out", str(out)]) == 2
    assert "profiled op families are conv, linear" in capsys.readouterr().err


def test_samples_survive_a_profile_written_and_read_back(tmp_path: Path) -> None:
    """Every field of every sample (whole ops and shares, uneven padding, groups, linears)
    comes back from the CSV as written, under its base op, once per pass."""
    pairs = small_pairs() + [(s, s) for s in (Sample("conv", 8, 8, 9, 11, 3, 2, 1, 0, 1, 8),
                                              Sample("conv", 3, 16, 7, 5, 5, 1, 2, 1, 2))]
    path = profile_path(CPU, tmp_path)
    written = run_profile(CPU, pairs, path, budget_s=60, repeats=1, warmup=0, passes=2, progress=False)
    expected = {s.key: (b.key, s) for b, s in pairs}
    assert written == 2 * len(expected)
    loaded = load_passes(path)
    assert len(loaded) == len(expected)
    for base, sample, times in loaded:
        assert (base, sample) == expected[sample.key]
        assert len(times) == 2 and all(t > 0 for t in times)


def test_a_row_cut_by_a_crash_is_dropped_before_resuming_and_bad_rows_are_refused(tmp_path: Path) -> None:
    path = profile_path(CPU, tmp_path)
    pairs = small_pairs()
    assert run_profile(CPU, pairs[:3], path, budget_s=60, repeats=1, warmup=0, passes=1, progress=False) == 3
    text = path.read_text()
    path.write_text(text + text.splitlines()[-1][:25])  # a crash half-way through a fourth row
    assert run_profile(CPU, pairs[:5], path, budget_s=60, repeats=1, warmup=0, passes=1, progress=False) == 2
    assert len(load_profile(path)) == 5  # every row whole; the cut one gone
    lines = path.read_text().splitlines()
    for bad in ("inf", "0"):
        broken = tmp_path / f"broken-{bad}.csv"
        header = lines[0].split(",")
        row = lines[1].split(",")
        row[header.index("median_ms")] = bad
        broken.write_text("\n".join([lines[0], ",".join(row)]) + "\n")
        with pytest.raises(CodlError, match=":2: corrupted row"):
            load_profile(broken)
    row = lines[1].split(",")
    row[header.index("ic" if "conv" in lines[1] else "fin")] = "0"
    broken.write_text("\n".join([lines[0], ",".join(row)]) + "\n")
    with pytest.raises(CodlError, match=":2: corrupted row"):
        load_profile(broken)
