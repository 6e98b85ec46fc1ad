"""Measuring the cost of sharing data between processors: copies between host and
device in each direction, type and layout conversions on either side, and the
synchronisation of a crossing (seed 003's data-sharing costs).

Each row is (kind, bytes, pass, ms): ``kind`` names one primitive the runtime's
channels use (:mod:`codl.runtime.channels`):

- ``h2d`` / ``d2h``: a copy between pinned host memory and the GPU, timed on the GPU;
- ``gpu_convert``: a type conversion on the GPU (fp32 <-> fp16 / bf16 <-> fp16), by bytes read;
- ``cpu_convert``: a type conversion on the CPU (fp32 <-> bf16), by bytes read;
- ``cpu_layout``: NCHW -> NHWC on the CPU (the copy into a channels-last tensor);
- ``sync_events`` / ``sync_flags``: one CPU -> GPU -> CPU signal round trip, no payload.

Sizes are log-spaced; the rows go to a CSV beside the op profiles, with the same
settings sidecar and resume rules.
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ..errors import CodlError
from ..processors import Processor
from ..timing import time_back_to_back
from .exchange import signal_round_trips

COLUMNS = ["kind", "bytes", "pass", "ms"]
SIZES = tuple(int(2 ** e) for e in np.arange(12, 28.5, 0.5))  # 4 KiB .. 256 MiB


def transfer_path(cpu: Processor, cuda: Processor | None, root: Path | None = None) -> Path:
    """Where this machine's data-sharing profile between ``cpu`` and ``cuda`` is kept."""
    from .measure import profile_path

    op_path = profile_path(cuda or cpu, root)
    return op_path.with_name(op_path.name.replace("-", "-transfers-", 1))


def transfer_pair(processor: Processor, root: Path | None = None) -> tuple[Processor, Processor | None, Path]:
    """The CPU and the CUDA device whose data sharing a profile of ``processor``
    measures (a CPU alone: its own conversions; a CUDA device: with the default CPU),
    and where that profile is kept (under ``root``)."""
    cpu, cuda = (processor, None) if processor.kind.value == "cpu" else (Processor.parse("cpu"), processor)
    if cuda is not None and cuda.kind.value != "cuda":
        raise CodlError(f"data sharing is profiled between the CPU and a cuda device, not {cuda.label}")
    return cpu, cuda, transfer_path(cpu, cuda, root)


def _layout_side(nbytes: int) -> int:
    """Height and width of the 64-channel fp32 activation of about ``nbytes``."""
    return int(max(1, round((max(1, nbytes // 4) // 64) ** 0.5)))


def _primitives(cuda: Processor | None, nbytes: int) -> dict[str, Callable[[], object]]:
    n = max(1, nbytes // 4)
    cpu32 = torch.randn(n)
    side = _layout_side(nbytes)
    nchw = torch.randn(1, 64, side, side)
    prims: dict[str, Callable[[], object]] = {
        "cpu_convert": lambda: cpu32.to(torch.bfloat16),
        "cpu_layout": lambda: nchw.contiguous(memory_format=torch.channels_last),
    }
    if cuda is not None:
        dev = cuda.device
        pinned = cpu32.pin_memory()
        on_gpu = torch.empty_like(cpu32, device=dev)
        back = torch.empty_like(pinned).pin_memory()
        gpu32 = torch.randn(n, device=dev)
        prims.update({
            "h2d": lambda: on_gpu.copy_(pinned, non_blocking=True),
            "d2h": lambda: back.copy_(on_gpu, non_blocking=True),
            "gpu_convert": lambda: gpu32.to(torch.float16),
        })
    return prims


def _primitive_size(kind: str, nbytes: int) -> int:
    """Bytes a primitive reads (the size its model is linear in)."""
    if kind == "cpu_layout":
        return 64 * _layout_side(nbytes) ** 2 * 4
    return max(1, nbytes // 4) * 4


def run_transfer_profile(cpu: Processor, cuda: Processor | None, path: Path, passes: int = 2,
                         sizes: tuple[int, ...] = SIZES, repeats: int = 5, progress: bool = True) -> int:
    """Measure every primitive at every size, ``passes`` times; resumable like op
    profiles. Returns the rows added."""
    from .measure import check_sidecar

    check_sidecar(path, cuda or cpu)
    done: set[tuple[str, int, int]] = set()
    if path.exists():
        with path.open(newline="") as f:
            done = {(r["kind"], int(r["bytes"]), int(r["pass"])) for r in csv.DictReader(f)}
    new_file, added = not path.exists(), 0
    cpu.activate()
    with path.open("a", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        if new_file:
            writer.writeheader()
        for p in range(passes):
            for size in sizes:
                prims = _primitives(cuda, size)
                for kind, fn in prims.items():
                    nbytes = _primitive_size(kind, size)
                    if (kind, nbytes, p) in done:
                        continue
                    proc = cpu if kind.startswith("cpu") else cuda
                    assert proc is not None
                    times, _, _ = time_back_to_back(fn, proc, repeats, warmup=2)
                    writer.writerow({"kind": kind, "bytes": nbytes, "pass": p, "ms": float(np.median(times))})
                    added += 1
                f.flush()
            if cuda is not None:
                for mode, ms in signal_round_trips(200, cuda.index).items():
                    kind = f"sync_{mode}"
                    if (kind, 0, p) not in done:
                        writer.writerow({"kind": kind, "bytes": 0, "pass": p, "ms": ms})
                        done.add((kind, 0, p))
                        added += 1
            if progress:
                print(f"codl: data-sharing pass {p + 1} of {passes} measured", file=sys.stderr, flush=True)
    return added


def load_transfers(path: Path) -> list[tuple[str, int, float]]:
    """(kind, bytes, median ms over passes) of a data-sharing profile."""
    if not path.exists():
        raise CodlError(f"{path}: no such data-sharing profile; run `codl profile --transfers` first")
    by: dict[tuple[str, int], list[float]] = {}
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        if reader.fieldnames != COLUMNS:
            raise CodlError(f"{path}: not a codl data-sharing profile (columns {reader.fieldnames})")
        for n, row in enumerate(reader, start=2):
            try:
                by.setdefault((row["kind"], int(row["bytes"])), []).append(float(row["ms"]))
            except (ValueError, TypeError) as e:
                raise CodlError(f"{path}:{n}: corrupted row ({e})") from None
    return [(k, b, float(np.median(t))) for (k, b), t in sorted(by.items())]
