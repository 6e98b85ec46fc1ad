"""Micro-benchmark of one CPU -> GPU -> CPU exchange in each synchronisation mode.

Two payloads: a bare signal (a flag), and a slice of ``--mb`` megabytes that the CPU
writes into pinned memory, the GPU copies in and back out, and the CPU then sees. Each
mode uses the same mechanism the session uses:

- ``events``: the CPU thread posts to a condition variable; the GPU driver thread wakes,
  enqueues the copies and a CUDA event, and posts back; the CPU waits for that post and
  for the event.
- ``flags``: before the clock starts, the driver thread has already enqueued a stream wait
  on flag A, the copies, and a stream write of flag B; the CPU raises A and spins on B.

Usage::

    codl bench exchange -n 2000 --mb 1 --json out.json
"""

from __future__ import annotations

import threading
import time

import torch

from ..runtime.sync import FlagArray
from .run import LatencyStats


def _events(n: int, nbytes: int) -> list[float]:
    host_in = torch.empty(nbytes // 4, dtype=torch.float32, pin_memory=True)
    host_out = torch.empty_like(host_in, pin_memory=True)
    dev = torch.empty(nbytes // 4, dtype=torch.float32, device="cuda")
    src = torch.randn(nbytes // 4) if nbytes else None
    go, back = threading.Semaphore(0), threading.Semaphore(0)
    event = torch.cuda.Event()
    stop = False

    def driver() -> None:
        while True:
            go.acquire()
            if stop:
                return
            if nbytes:
                dev.copy_(host_in, non_blocking=True)
                host_out.copy_(dev, non_blocking=True)
            event.record()
            back.release()

    t = threading.Thread(target=driver, daemon=True)
    t.start()
    samples = []
    for _ in range(n):
        start = time.perf_counter()
        if nbytes:
            host_in.copy_(src)
        go.release()
        back.acquire()
        event.synchronize()
        samples.append((time.perf_counter() - start) * 1e6)
    stop = True
    go.release()
    t.join()
    if nbytes:
        assert torch.equal(host_out, src), "events round trip corrupted the data"
    return samples


def _flags(n: int, nbytes: int) -> list[float]:
    flags = FlagArray(2)
    host_in = torch.empty(nbytes // 4, dtype=torch.float32, pin_memory=True)
    host_out = torch.empty_like(host_in, pin_memory=True)
    dev = torch.empty(nbytes // 4, dtype=torch.float32, device="cuda")
    src = torch.randn(nbytes // 4) if nbytes else None
    samples = []
    for gen in range(1, n + 1):
        flags.gpu_wait(0, gen)  # armed before the clock starts
        if nbytes:
            dev.copy_(host_in, non_blocking=True)
            host_out.copy_(dev, non_blocking=True)
        flags.gpu_write(1, gen)
        start = time.perf_counter()
        if nbytes:
            host_in.copy_(src)
        flags.cpu_write(0, gen)
        flags.cpu_wait(1, gen, lambda: False)
        samples.append((time.perf_counter() - start) * 1e6)
    torch.cuda.synchronize()
    if nbytes:
        assert torch.equal(host_out, src), "flags round trip corrupted the data"
    return samples


def measure_exchange(iters: int, nbytes: int) -> list[dict]:
    """Both modes, a bare flag and an ``nbytes`` payload; latencies in ms."""
    rows = []
    for mode, fn in (("events", _events), ("flags", _flags)):
        for size in (0, nbytes):
            fn(50, size)  # warm up
            stats = LatencyStats.of([us / 1e3 for us in fn(iters, size)])
            rows.append({"mode": mode, "payload_bytes": size, "latency_ms": stats.to_json()})
    return rows
