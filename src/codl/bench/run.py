"""Timing a runner: warm-up, repeated measured runs, and summary statistics.

Each iteration is timed on the host clock from a synchronised device to a synchronised
device, so it covers the whole inference (all kernels, all launches) with inputs already
resident on the device and outputs left there. Progress goes to stderr, never inside
the timed loop.
"""

from __future__ import annotations

import sys
import time
from dataclasses import asdict, dataclass
from typing import Callable, Sequence

import numpy as np
import torch

from ..processors import Processor


@dataclass(frozen=True)
class LatencyStats:
    """Summary of measured latencies, in milliseconds."""

    count: int
    median_ms: float
    mean_ms: float
    min_ms: float
    max_ms: float
    p90_ms: float
    std_ms: float

    @staticmethod
    def of(samples_ms: Sequence[float]) -> "LatencyStats":
        a = np.asarray(samples_ms, dtype=np.float64)
        if a.size == 0:
            raise ValueError("no samples")
        return LatencyStats(int(a.size), float(np.median(a)), float(a.mean()), float(a.min()), float(a.max()),
                            float(np.percentile(a, 90)), float(a.std()))

    def to_json(self) -> dict[str, float]:
        return asdict(self)


def time_calls(fn: Callable[[], object], processor: Processor, iters: int, warmup: int,
               label: str = "", progress: bool = True) -> list[float]:
    """Latency in ms of ``iters`` calls of ``fn`` after ``warmup`` untimed calls."""
    if iters < 1 or warmup < 0:
        raise ValueError("iters must be >= 1 and warmup >= 0")

    def say(text: str) -> None:
        if progress:
            print(f"codl: {label}{text}", file=sys.stderr, flush=True)

    with torch.inference_mode():
        if warmup:
            say(f"warming up ({warmup} runs)")
            for _ in range(warmup):
                fn()
            processor.synchronize()
        say(f"timing {iters} runs")
        samples = []
        for _ in range(iters):
            processor.synchronize()
            start = time.perf_counter()
            fn()
            processor.synchronize()
            samples.append((time.perf_counter() - start) * 1e3)
    return samples
