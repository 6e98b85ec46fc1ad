"""Measuring op samples on one processor into a resumable CSV dataset.

The dataset lives under the cache directory (:func:`codl.settings.cache_dir`), one CSV per
machine fingerprint and processor setting, with a JSON sidecar recording the settings and
the fingerprint. A later run with the same settings resumes where the last one stopped;
a run on another machine or with other settings refuses to mix into it.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import sys
import time
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np
import torch

from ..errors import CodlError
from ..fingerprint import artifact_header, fingerprint
from ..processors import Processor
from ..runtime import ReferenceRunner
from ..runtime.reference import to_processor
from ..settings import cache_dir
from ..timing import host_launch_ms, time_back_to_back
from .sampling import Sample

_SAMPLE = [f.name for f in fields(Sample)]
COLUMNS = ["key", "base"] + _SAMPLE + ["pass", "median_ms", "min_ms", "p90_ms", "repeats", "batch", "clock", "launch_ms",
                                       "canary_ms"]
_PASS_COLUMNS = COLUMNS[:-1]  # before the canary column
_FIRST_COLUMNS = ["key", "base"] + _SAMPLE + ["median_ms", "min_ms", "p90_ms", "repeats"]  # codl 0.1.0, one pass


def profile_path(processor: Processor, root: Path | None = None) -> Path:
    """Where this machine's profile of ``processor`` (with its settings) is kept."""
    fp = fingerprint()
    machine = hashlib.sha1(json.dumps({k: fp.get(k) for k in ("cpu", "cpu_cores", "gpu", "torch")},
                                      sort_keys=True).encode()).hexdigest()[:10]
    d = processor.describe()
    label = "-".join(str(d[k]) for k in ("device", "dtype") if k in d)
    label += "-nhwc" if processor.channels_last else ""
    label += f"-t{d['threads']}" if "threads" in d else ""
    label += f"-sm{processor.sm_limit}" if processor.sm_limit else ""
    label += "-at" if processor.autotune else ""
    label += "-own" if processor.own_kernels else "-fastest" if processor.fastest_kernels else ""
    return (root or cache_dir() / "profiles") / f"{machine}-{label.replace(':', '')}.csv"


def _settings(processor: Processor, canary: bool = False) -> dict:
    return {**artifact_header("profile"), "processor": processor.describe(), **({"canary": True} if canary else {})}


def check_sidecar(path: Path, processor: Processor, canary: bool = False) -> None:
    side = path.with_suffix(".json")
    mine = _settings(processor, canary)
    if not side.exists():
        side.parent.mkdir(parents=True, exist_ok=True)
        side.write_text(json.dumps(mine, indent=1))
        return
    try:
        theirs = json.loads(side.read_text())
    except json.JSONDecodeError as e:
        raise CodlError(f"{side}: corrupted profile settings ({e})") from None
    for key in ("schema_version", "processor", "canary"):
        if theirs.get(key) != mine.get(key):
            raise CodlError(f"{path}: made with other settings ({key}: {theirs.get(key)!r}, now {mine.get(key)!r}); "
                            "use another --out or delete it")
    diff = [k for k in ("cpu", "gpu", "torch") if theirs.get("fingerprint", {}).get(k) != mine["fingerprint"].get(k)]
    if diff:
        raise CodlError(f"{path}: measured on another machine or software ({', '.join(diff)} differ)")


def profile_settings(path: Path) -> dict[str, Any]:
    """A profile's settings sidecar (what it measured: ``processor``, ``fingerprint``),
    with a one-line error when it is missing or corrupted."""
    side = path.with_suffix(".json")
    try:
        return json.loads(side.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise CodlError(f"{side}: the profile's settings file is missing or corrupted ({e})") from None


def locate_profile(processor: Processor | None, path: Path | None = None,
                   root: Path | None = None) -> tuple[Path, dict[str, Any]]:
    """A profile and the processor it measured (as :meth:`Processor.describe` records
    it): ``path`` when given, any profile, possibly from another machine, whose settings
    say what it measured; else this machine's profile of ``processor`` (under ``root``)."""
    if path is not None:
        return path, profile_settings(path)["processor"]
    if processor is None:
        raise ValueError("give a processor or a profile path")
    return profile_path(processor, root), processor.describe()


def measured(path: Path) -> set[tuple[str, int]]:
    """(sample key, pass) pairs already in a profile."""
    if not path.exists():
        return set()
    with path.open(newline="") as f:
        return {(row["key"], int(row.get("pass") or 0)) for row in csv.DictReader(f)}


def run_profile(processor: Processor, samples: Iterable[tuple[Sample, Sample]], path: Path, budget_s: float,
                repeats: int = 10, warmup: int = 3, passes: int = 2, progress: bool = True,
                canary: bool = False) -> int:
    """Measure (base, sample) pairs not yet in ``path`` until the budget is spent; returns
    how many rows were added. Each row is flushed as soon as it is measured.

    The samples are measured ``passes`` times, one whole pass over them after the other,
    so each sample is timed at moments minutes apart: the median over passes evens out
    slow drifts of the machine (clocks, neighbours), and the agreement between passes is
    the profile's noise floor (see :func:`noise_floor`). Each measurement is the median
    of ``repeats`` blocks of back-to-back calls (:func:`codl.timing.time_back_to_back`):
    on a GPU the device time of the op's kernels, with the host's launch time per call
    recorded beside it (``launch_ms``).

    With ``canary`` (CPUs whose speed drifts: shared hosts), a reference GEMM is timed
    just before each measurement (``canary_ms``, the fastest of 10 blocks); reading the
    profile then scales each sample's fastest block by the canary's median over the
    profile over its own (:func:`load_passes`): the sample's time at the machine's
    usual speed.
    """
    if canary and processor.kind.value != "cpu":
        raise CodlError("--canary applies to cpu profiles only (a GPU's time is its kernels' device time)")
    check_sidecar(path, processor, canary)
    done = measured(path)
    samples = list(samples)
    todo, queued = [], set(done)
    for p in range(passes):
        for b, s in samples:  # a sample shared by two ops (a model's op and another's share) once
            if (s.key, p) not in queued:
                queued.add((s.key, p))
                todo.append((p, b, s))
    new_file = not path.exists()
    columns = COLUMNS
    if not new_file:  # resuming a profile of an earlier codl: its columns
        with path.open(newline="") as f:
            columns = next(csv.reader(f), None) or COLUMNS
        if columns == _FIRST_COLUMNS:
            raise CodlError(f"{path}: a one-pass profile of codl 0.1.0 cannot be resumed; use another --out")
        if canary and "canary_ms" not in columns:
            raise CodlError(f"{path}: profiled without --canary; use another --out")
    start, added = time.perf_counter(), 0
    runner_canary = _canary(processor) if canary else None
    if not new_file:
        _drop_partial_row(path)
    with path.open("a", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
        if new_file:
            writer.writeheader()
        for i, (pass_, base, sample) in enumerate(todo):
            elapsed = time.perf_counter() - start
            if elapsed > budget_s:
                break
            row = {"key": sample.key, "base": base.key, **asdict(sample), "pass": pass_,
                   **_measure(sample, processor, repeats, warmup, launch=not pass_, canary=runner_canary)}
            line = io.StringIO()
            csv.DictWriter(line, fieldnames=columns, extrasaction="ignore").writerow(row)
            f.write(line.getvalue())  # the row in one write: an interruption leaves it whole or partial at the end
            f.flush()
            added += 1
            if progress and (added % 20 == 0 or i == len(todo) - 1):
                share = (i + 1) / len(todo)
                bar = "#" * int(share * 20)
                left = (time.perf_counter() - start) * (1 - share) / share / 60
                print(f"codl: [{bar:<20}] {len(done) + added}/{len(done) + len(todo)} measurements, pass "
                      f"{pass_ + 1} of {passes}, {elapsed / 60:.1f} of {budget_s / 60:.1f} min, about "
                      f"{left:.1f} min to go", file=sys.stderr, flush=True)
    return added


def _drop_partial_row(path: Path) -> None:
    """Cut a last row a crash left without its line end, so a resumed run appends whole rows."""
    with path.open("rb+") as f:
        data = f.read()
        if data and not data.endswith(b"\n"):
            f.truncate(data.rfind(b"\n") + 1)


CANARY_SIZE = 256  # the reference GEMM: CANARY_SIZE^2 x CANARY_SIZE, in the processor's type


def _canary(processor: Processor) -> Callable[[], torch.Tensor]:
    a = to_processor(torch.randn(CANARY_SIZE, CANARY_SIZE), processor)
    return lambda: torch.mm(a, a)


def _measure(sample: Sample, processor: Processor, repeats: int, warmup: int, launch: bool,
             canary: Callable[[], torch.Tensor] | None = None) -> dict:
    """One measurement of ``sample`` (its graph, weights and input are freed on return),
    after the canary's where given."""
    graph = sample.graph()
    runner = ReferenceRunner(graph, processor)
    x = to_processor(torch.randn(graph.inputs[0].shape), processor)  # ready: only the op is timed
    ref = min(time_back_to_back(canary, processor, 10, 1, target_ms=0.3)[0]) if canary is not None else ""
    times, batch, clock = time_back_to_back(lambda: runner(x), processor, repeats, warmup)
    # on an accelerator, also the host's cost of issuing the op (its dispatch term), once
    issue = host_launch_ms(lambda: runner(x), processor) if launch and processor.kind.value != "cpu" else ""
    return {"median_ms": float(np.median(times)), "min_ms": min(times), "p90_ms": float(np.percentile(times, 90)),
            "repeats": repeats, "batch": batch, "clock": clock, "launch_ms": issue, "canary_ms": ref}


def load_passes(path: Path) -> list[tuple[str, Sample, list[float]]]:
    """(base key, sample, ms of each pass) of every sample of a profile, with clear
    errors for bad files: the median of the pass's blocks, or in a profile taken with a
    canary the fastest block scaled by the canary (see :func:`run_profile`). Reads
    profiles of earlier codl versions too (one pass; no canary column)."""
    if not path.exists():
        raise CodlError(f"{path}: no such profile; run `codl profile` first")
    names = {f.name: f.type for f in fields(Sample)}
    by_key: dict[str, tuple[str, Sample, list[float]]] = {}
    seen: set[tuple[str, str]] = set()
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        if reader.fieldnames not in (COLUMNS, _PASS_COLUMNS, _FIRST_COLUMNS):
            raise CodlError(f"{path}: not a codl profile of this version (columns {reader.fieldnames})")
        rows = list(reader)
    try:
        canaries = [float(r["canary_ms"]) for r in rows if r.get("canary_ms")]
    except ValueError as e:
        raise CodlError(f"{path}: corrupted canary time ({e})") from None
    usual = float(np.median(canaries)) if canaries else 0.0
    if canaries and not usual > 0:
        raise CodlError(f"{path}: corrupted canary times (median {usual})")
    for n, row in enumerate(rows, start=2):
        try:
            sample = Sample(**{k: (row[k] if k == "family" else int(row[k])) for k in names})
            ms = float(row["min_ms"]) * usual / float(row["canary_ms"]) if row.get("canary_ms") else float(row["median_ms"])
        except (ValueError, TypeError, ZeroDivisionError) as e:
            raise CodlError(f"{path}:{n}: corrupted row ({e})") from None
        if not (ms > 0 and np.isfinite(ms)):
            raise CodlError(f"{path}:{n}: corrupted row (latency {row['median_ms']!r})")
        sizes = ("ic", "oc", "h", "w") if sample.family == "conv" else ("rows", "fin", "fout")
        if sample.family not in ("conv", "linear") or min(getattr(sample, k) for k in sizes) < 1 or \
                min(sample.k, sample.s, sample.g) < 1 or min(sample.pad_top, sample.pad_bottom, sample.pad) < 0:
            raise CodlError(f"{path}:{n}: corrupted row (an op with family {sample.family!r} and sizes "
                            f"{[getattr(sample, k) for k in sizes]}, kernel {sample.k}, stride {sample.s})")
        if (row["key"], row.get("pass") or "0") in seen:  # measured twice in one pass: the first counts
            continue
        seen.add((row["key"], row.get("pass") or "0"))
        by_key.setdefault(row["key"], (row["base"], sample, []))[2].append(ms)
    return list(by_key.values())


def load_profile(path: Path) -> list[tuple[str, Sample, float]]:
    """(base key, sample, median ms over its passes) rows of a profile."""
    return [(base, sample, float(np.median(times))) for base, sample, times in load_passes(path)]


# a profile whose passes agree within +-10% for fewer samples than this cannot show the
# predictors' goal (90% of predictions within +-10%)
NOISY_BELOW = 0.9


def noise_floor(path: Path) -> dict[str, dict[str, float]]:
    """How well a profile's passes agree, per op family: the share of samples whose
    first two passes are within +-5/10% of each other's mean, over samples measured twice.
    No predictor can be judged finer than this."""
    out: dict[str, dict[str, float]] = {}
    for family in ("conv", "linear"):
        pairs = np.array([t[:2] for _, s, t in load_passes(path) if s.family == family and len(t) >= 2])
        if len(pairs):
            rel = np.abs(pairs[:, 0] - pairs[:, 1]) / pairs.mean(axis=1)
            out[family] = {"within_5": float(np.mean(rel <= 0.05)), "within_10": float(np.mean(rel <= 0.10)),
                           "samples": int(len(pairs))}
    return out
