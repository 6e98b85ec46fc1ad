"""Timing primitives, shared by the stages that measure (profile/) and those that
benchmark (bench/, the planners' measured guard): summary statistics, a callable timed
call by call (:func:`time_calls`), back to back (:func:`time_back_to_back`), its issue
cost on the host (:func:`host_launch_ms`), and several callables interleaved
(:func:`time_interleaved`).

:func:`time_calls` times each call on the host clock from a synchronised device to a
synchronised device, so it covers the whole inference (all kernels, all launches) with
inputs already resident on the device and outputs left there. Progress goes to stderr,
never inside the timed loop.
"""

from __future__ import annotations

import random
import sys
import time
from dataclasses import asdict, dataclass
from typing import Callable, Sequence

import numpy as np
import torch

from .processors import Processor


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


def time_back_to_back(fn: Callable[[], object], processor: Processor, repeats: int, warmup: int,
                      target_ms: float = 1.0, max_batch: int = 1000) -> tuple[list[float], int, str]:
    """Per-call latency in ms of ``fn`` run back to back.

    Calls are timed in blocks of ``batch`` calls, ``batch`` chosen from one warm call so
    that a block lasts about ``target_ms``; each of the ``repeats`` blocks gives one
    sample (block time / batch).

    On CUDA the block is captured once as a CUDA graph and replayed, timed with events
    on the processor's stream: the samples are the device's time for the op's kernels
    (gaps between kernels included), without the host's launch cost, which on a fast
    GPU exceeds most kernels and would otherwise be what is timed (see
    :func:`host_launch_ms`). If the op cannot be captured, the eager calls are timed
    with events instead. Elsewhere blocks are timed on the host clock from a
    synchronised device to a synchronised device. Returns (samples, batch, clock),
    clock being "graph", "events" or "host".
    """
    if repeats < 1 or warmup < 0:
        raise ValueError("repeats must be >= 1 and warmup >= 0")
    with torch.inference_mode():
        for _ in range(max(warmup, 1)):
            fn()
        processor.synchronize()
        if processor.kind.value != "cuda":
            block = _host_block(fn, processor)
            clock = "host"
        else:
            try:
                block = _GraphBlock(fn, processor)
                block(1)
                clock = "graph"
            except RuntimeError:  # not capturable: eager launches, device clock
                torch.cuda.synchronize(processor.index)
                block = _event_block(fn, processor)
                clock = "events"
        one = min(block(1) for _ in range(2))
        batch = int(min(max_batch, max(1, np.ceil(target_ms / max(one, 1e-6)))))
        if isinstance(block, _GraphBlock):  # the blocks replayed back to back, after a warm one
            samples = block.samples(batch, repeats)
        else:
            samples = [block(batch) for _ in range(repeats)]
    return samples, batch, clock


def _host_block(fn: Callable[[], object], processor: Processor) -> Callable[[int], float]:
    def block(n: int) -> float:
        processor.synchronize()
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        processor.synchronize()
        return (time.perf_counter() - t0) * 1e3 / n
    return block


def _event_block(fn: Callable[[], object], processor: Processor) -> Callable[[int], float]:
    def block(n: int) -> float:
        with processor.work_context():
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            for _ in range(n):
                fn()
            end.record()
        end.synchronize()
        return start.elapsed_time(end) / n
    return block


class _GraphBlock:
    """Blocks of calls captured as one CUDA graph (the latest block size only)."""

    def __init__(self, fn: Callable[[], object], processor: Processor) -> None:
        self.fn, self.n, self.graph = fn, 0, None
        self.stream = processor.stream() or torch.cuda.Stream(processor.index)

    def capture(self, n: int) -> "torch.cuda.CUDAGraph":
        if n != self.n:
            self.graph, self.n = None, 0  # release the previous block's memory first
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph, stream=self.stream):
                for _ in range(n):
                    self.fn()
            self.graph, self.n = graph, n
        assert self.graph is not None
        return self.graph

    def __call__(self, n: int) -> float:
        return _replay_ms(self.capture(n), self.stream, 1)[0] / n

    def samples(self, n: int, repeats: int) -> list[float]:
        return [ms / n for ms in _replay_ms(self.capture(n), self.stream, repeats)]


def _replay_ms(graph: "torch.cuda.CUDAGraph", stream: "torch.cuda.Stream", times: int) -> list[float]:
    """Device ms of ``times`` replays of ``graph`` issued back to back after one untimed
    replay: the device never idles between them, so its clocks stay up."""
    with torch.cuda.stream(stream):
        events = [torch.cuda.Event(enable_timing=True) for _ in range(times + 1)]
        graph.replay()
        for i in range(times):
            events[i].record()
            graph.replay()
        events[times].record()
    events[times].synchronize()
    return [events[i].elapsed_time(events[i + 1]) for i in range(times)]


def host_launch_ms(fn: Callable[[], object], processor: Processor, calls: int = 10, repeats: int = 3) -> float:
    """Median host time in ms to issue one call of ``fn`` (back to back, without waiting
    for the device): on a GPU, the launch cost the op adds to the issuing thread."""
    times = []
    with torch.inference_mode():
        for _ in range(repeats):
            processor.synchronize()
            t0 = time.perf_counter()
            for _ in range(calls):
                fn()
            times.append((time.perf_counter() - t0) * 1e3 / calls)
        processor.synchronize()
    return float(np.median(times))


def time_interleaved(fns: dict[str, Callable[[], object]], rounds: int, seconds: float | None = None,
                     seed: int = 0) -> dict[str, list[float]]:
    """Host ms of every call of each of ``fns``, timed call by call in rounds, each round
    in a new shuffled order (``random.Random(seed)``), so a drift of the machine reaches
    them all alike. ``rounds`` rounds, or with ``seconds`` as many as fit in that time
    (at least 3). No warm-up: the caller warms up first."""
    samples: dict[str, list[float]] = {k: [] for k in fns}
    order, rng = list(fns), random.Random(seed)
    start, done = time.perf_counter(), 0
    while done < rounds if seconds is None else done < 3 or time.perf_counter() - start < seconds:
        done += 1
        rng.shuffle(order)
        for k in order:
            t = time.perf_counter()
            fns[k]()
            samples[k].append((time.perf_counter() - t) * 1e3)
    return samples
