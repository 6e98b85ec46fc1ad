"""What one exchange between the CPU and a CUDA GPU costs, through the session's own
channel (:class:`codl.runtime.channels.DeviceChannel`, flags), over sizes from 64 KB to
32 MB, both directions, with and without type conversion, beside the raw pinned copy
measured in the same run: what ``codl bench exchange`` prints (:mod:`codl.bench.exchange`)
and the model profile's links (:func:`codl.profile.model.measure_links`).

Every sample is timed on the host clock between two flags, with the GPU's side enqueued
before the clock starts (as a session does):

- ``cpu->gpu``: the CPU copies a tensor of its own into the channel's pinned buffer
  and raises its flags; the GPU copies the chunks in, converts them to its type and
  raises a flag the CPU spins on.
- ``gpu->cpu``: the CPU raises a flag the GPU waits on; the GPU converts its tensor to
  the CPU's type, copies it out and raises the channel's flag, on which the CPU spins
  (the CPU then uses the pinned buffer as it is).
- ``raw``: the same two flags around one pinned copy of the same bytes in one piece,
  without any CPU copy or conversion: the bandwidth the exchange is judged against.
- ``signal``: the two flags alone (the round trip every sample above includes).

Sizes are bytes of the region in the CPU's type. The sizes, directions and conversions
alternate within each round, so a drift of the machine reaches them all alike.
"""

from __future__ import annotations

import time

import torch

from ..ir.graph import DType
from ..processors import Processor
from ..runtime.call import CallState
from ..runtime.channels import DeviceChannel
from ..runtime.device import GpuSide
from ..runtime.sync import FlagArray
from ..timing import LatencyStats

SIZES = (64 << 10, 256 << 10, 1 << 20, 4 << 20, 16 << 20, 32 << 20)
# conversion name -> (CPU type, channels-last), (GPU type, channels-last)
CONVERSIONS = {
    "none": ((DType.BFLOAT16, True), (DType.BFLOAT16, True)),
    "dtype": ((DType.BFLOAT16, True), (DType.FLOAT16, True)),
    "dtype+layout": ((DType.FLOAT32, False), (DType.FLOAT16, True)),
}


def _shape(nbytes: int, itemsize: int) -> tuple[int, int, int, int]:
    rows = max(1, nbytes // (itemsize * 64 * 64))
    return (1, 64, rows, 64)


class _Case:
    """One (size, conversion): a channel each way, tensors on both sides, and the flags."""

    def __init__(self, nbytes: int, conversion: str, sm_limit: int | None, device: int, mapped: bool) -> None:
        (cdt, ccl), (gdt, gcl) = CONVERSIONS[conversion]
        self.cpu = Processor.parse("cpu", dtype=cdt, channels_last=ccl)
        self.gpu = Processor.parse(f"cuda:{device}", dtype=gdt, channels_last=gcl, sm_limit=sm_limit)
        shape = _shape(nbytes, torch.tensor([], dtype=self.cpu.torch_dtype).element_size())
        box = tuple((0, d) for d in shape)
        self.up = DeviceChannel(0, "x", box, 0, self.cpu, self.gpu, self.cpu.torch_dtype, 0, mapped)
        self.down = DeviceChannel(1, "y", box, 1, self.cpu, self.gpu, self.cpu.torch_dtype, self.up.n_flags, mapped)
        n = self.up.n_flags + self.down.n_flags
        self.start, self.done = n, n + 1  # two more flags: the clock's start and the GPU's done
        self.flags = FlagArray(n + 2, device)
        self.up.flags = self.down.flags = self.flags
        cpu_fmt = torch.channels_last if ccl else torch.contiguous_format
        gpu_fmt = torch.channels_last if gcl else torch.contiguous_format
        self.cpu_tensor = torch.randn(shape).to(self.cpu.torch_dtype).contiguous(memory_format=cpu_fmt)
        self.gpu_tensor = torch.randn(shape, device=self.gpu.device).to(self.gpu.torch_dtype).contiguous(memory_format=gpu_fmt)
        self.pinned = torch.empty(shape, dtype=self.cpu.torch_dtype, pin_memory=True)
        self.raw_dev = torch.empty(shape, dtype=self.cpu.torch_dtype, device=self.gpu.device)
        self.side = GpuSide(self.gpu, "", "")
        self.nbytes = self.up.host.numel() * self.up.host.element_size()
        self.received: torch.Tensor | None = None
        self._warm()

    def _warm(self) -> None:
        """Each direction's GPU side once with its flags raised in advance: a kernel's
        first launch behind a wait that is not yet met blocks the launching thread until
        it is (CUDA loads kernels lazily), and here that thread is the one to meet it."""
        state = CallState(2, 60.0, ("cpu", "gpu"))
        self.flags.raise_all([*self.up.gpu_waits, self.start])
        with self.gpu.work_context(), torch.cuda.stream(self.side.compute):
            self.up.recv(state, self.side)
            self.flags.gpu_wait(self.side.compute, self.start)
            self.down.send(self.gpu_tensor, state, self.side)
        torch.cuda.synchronize(self.gpu.index)
        self.flags.clear()

    def _spin(self, i: int) -> None:
        self.flags.cpu_wait(i, lambda: None)

    def _timed(self, arm, go) -> float:  # noqa: ANN001 - two closures
        torch.cuda.synchronize(self.gpu.index)
        with self.gpu.work_context(), torch.cuda.stream(self.side.compute):
            arm()
        t0 = time.perf_counter()
        go()
        us = (time.perf_counter() - t0) * 1e6
        torch.cuda.synchronize(self.gpu.index)
        return us

    def cpu_to_gpu(self) -> float:
        state = CallState(2, 60.0, ("cpu", "gpu"))

        def arm() -> None:
            self.received = self.up.recv(state, self.side)
            self.flags.gpu_write(self.side.compute, self.done)
        return self._timed(arm, lambda: (self.up.send(self.cpu_tensor, state, None), self._spin(self.done)))

    def gpu_to_cpu(self) -> float:
        state = CallState(2, 60.0, ("cpu", "gpu"))

        def arm() -> None:
            self.flags.gpu_wait(self.side.compute, self.start)
            self.down.send(self.gpu_tensor, state, self.side)

        def go() -> None:
            self.flags.cpu_raise(self.start)
            self.received = self.down.recv(state, None)
        return self._timed(arm, go)

    def raw(self, upward: bool) -> float:
        def arm() -> None:
            self.flags.gpu_wait(self.side.compute, self.start)
            if upward:
                self.raw_dev.copy_(self.pinned, non_blocking=True)
            else:
                self.pinned.copy_(self.raw_dev, non_blocking=True)
            self.flags.gpu_write(self.side.compute, self.done)
        return self._timed(arm, lambda: (self.flags.cpu_raise(self.start), self._spin(self.done)))

    def signal(self) -> float:
        def arm() -> None:
            self.flags.gpu_wait(self.side.compute, self.start)
            self.flags.gpu_write(self.side.compute, self.done)
        return self._timed(arm, lambda: (self.flags.cpu_raise(self.start), self._spin(self.done)))

    def check(self) -> None:
        """The data arrived: each direction once more, compared with the source."""
        self.cpu_to_gpu()
        assert torch.allclose(self.received.float().cpu(), self.cpu_tensor.float(), rtol=1e-2, atol=1e-2)  # type: ignore[union-attr]
        self.gpu_to_cpu()
        assert torch.allclose(self.received.float(), self.gpu_tensor.float().cpu(), rtol=1e-2, atol=1e-2)  # type: ignore[union-attr]


def signal_round_trips(iters: int, device: int = 0) -> dict[str, float]:
    """Median ms of a bare CPU -> GPU -> CPU signal in each sync mode: ``flags`` as in
    :class:`_Case` ``signal``; ``events`` as a session with events does it (the CPU
    posts to a condition variable, the GPU's driver thread wakes, records a CUDA event
    and posts back, the CPU waits for the post and the event)."""
    import threading

    case = _Case(64 << 10, "none", None, device, False)
    go, back = threading.Semaphore(0), threading.Semaphore(0)
    event = torch.cuda.Event()
    stop = False

    def driver() -> None:
        while True:
            go.acquire()
            if stop:
                return
            event.record(case.side.compute)
            back.release()
    t = threading.Thread(target=driver, daemon=True)
    t.start()

    def events() -> float:
        start = time.perf_counter()
        go.release()
        back.acquire()
        event.synchronize()
        return (time.perf_counter() - start) * 1e3
    out = {}
    for mode, fn in (("events", events), ("flags", lambda: case.signal() / 1e3)):
        samples = [fn() for _ in range(iters + 20)][20:]
        out[mode] = float(LatencyStats.of(samples).median_ms)
    stop = True
    go.release()
    t.join()
    return out


def measure_exchange(iters: int, sm_limit: int | None = None, sizes: tuple[int, ...] = SIZES,
                     conversions: tuple[str, ...] = tuple(CONVERSIONS), device: int = 0,
                     progress: bool = True) -> list[dict]:
    """Rows of (size, conversion, path, what) with latency statistics in ms and GB/s.
    ``path`` is "dma" (copy engine, chunked) or "mapped" (GPU kernels on the pinned
    buffer); ``default`` says which one a session picks for that size."""
    import sys

    from ..runtime.channels import MAPPED_BYTES

    cases = {(s, c, m): _Case(s, c, sm_limit, device, m == "mapped") for s in sizes for c in conversions
             for m in ("dma", "mapped")}
    cases = {k: v for k, v in cases.items() if k[2] == "dma" or v.up.mapped is not None}
    for case in cases.values():
        case.check()
    ways = ("raw_h2d", "cpu->gpu", "raw_d2h", "gpu->cpu", "signal")
    samples: dict[tuple, list[float]] = {(*k, w): [] for k in cases for w in ways}
    for r in range(iters + 3):  # three rounds of warm-up
        if progress and r % 10 == 0:
            print(f"codl: exchange round {r + 1}/{iters + 3}", file=sys.stderr, flush=True)
        for k, case in cases.items():
            got = {"raw_h2d": case.raw(True), "cpu->gpu": case.cpu_to_gpu(), "raw_d2h": case.raw(False),
                   "gpu->cpu": case.gpu_to_cpu(), "signal": case.signal()}
            if r >= 3:
                for w, us in got.items():
                    samples[(*k, w)].append(us / 1e3)
    rows = []
    for (s, c, m), case in cases.items():
        for w in ways:
            stats = LatencyStats.of(samples[(s, c, m, w)])
            rows.append({"bytes": case.nbytes, "conversion": c, "path": m, "default": (m == "mapped") == (s <= MAPPED_BYTES),
                         "what": w, "chunks": len(case.up.chunks), "latency_ms": stats.to_json(),
                         "gb_per_s": case.nbytes / (stats.median_ms * 1e6)})
    return rows
