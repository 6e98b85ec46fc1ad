"""Processor 1's program on a CUDA GPU: enqueued step by step, or replayed from a CUDA
graph.

The thread that drives the GPU only enqueues: graph inputs are copied into pinned
buffers on the host (:class:`InputFeed`) and in on the compute stream, then every step's
kernels, conversions and copies go to the compute and copy streams (:class:`GpuSide`),
and the program ends by joining the copy stream and signalling that the GPU is done
(a flag, or a CUDA event with ``sync="events"``), which the call waits for before it
returns: no GPU work of a call outlives it.

With flags, the waits on the CPU are stream operations, so the whole program can be
captured once into a CUDA graph (after one eager warm-up run with the flags raised in
advance) and replayed with one launch per call: the driver thread then costs a few
microseconds per call instead of a Python loop over every step, and it no longer
competes with the CPU side for the interpreter or for a core. Traced calls, and calls
while a fault hook is set, run eagerly (per-step timing events, hooks per step).
"""

from __future__ import annotations

import functools
import time
from typing import Callable

import torch

from ..errors import ExecutionError
from ..ir.graph import TensorSpec
from ..processors import Processor
from ..processors.cuda import session_streams
from .call import CallState, Prober
from .faults import probe_streams
from .reference import to_processor
from .steps import Local, Recv, Run, Send, Step, call_hook, run_step
from .sync import FlagArray
from .trace import DeviceTimer

FaultHook = Callable[[int, Step], None]


class GpuSide:
    """What the GPU's steps need while they are enqueued: the streams, the trace timer
    of a traced call (else None) and the names of its tracks."""

    def __init__(self, processor: Processor, track: str, copy_track: str) -> None:
        self.compute, self.copy = session_streams(processor.index, processor.sm_limit)
        self.timer: DeviceTimer | None = None
        self.track, self.copy_track = track, copy_track


class InputFeed:
    """A graph input the GPU reads: the host tensor goes into a pinned buffer (on the
    calling thread), then in and converted on the compute stream."""

    def __init__(self, slot: int, index: int, spec: TensorSpec, gpu: Processor) -> None:
        dtype = getattr(torch, spec.dtype.value)
        self.slot, self.index, self.gpu = slot, index, gpu
        self.host = torch.zeros(spec.shape, dtype=dtype, pin_memory=True)
        self.dev = torch.empty(spec.shape, dtype=dtype, device=gpu.device)

    def load(self, x: torch.Tensor) -> None:
        self.host.copy_(x)

    def enqueue(self) -> torch.Tensor:
        self.dev.copy_(self.host, non_blocking=True)
        return to_processor(self.dev, self.gpu)


class GpuProgram:
    """Processor 1's steps on a CUDA GPU (see the module docstring)."""

    def __init__(self, processor: Processor, steps: list[Step], feeds: list[InputFeed],
                 template: list[torch.Tensor | None], side: GpuSide, flags: FlagArray | None, done_flag: int,
                 where: str) -> None:
        self.processor, self.steps, self.feeds, self.template = processor, steps, feeds, template
        self.side, self.flags, self.done_flag, self.where = side, flags, done_flag, where
        self.end = torch.cuda.Event()  # events mode: the program's last work
        self.graph: torch.cuda.CUDAGraph | None = None

    def load(self, tensors: list[torch.Tensor]) -> None:
        """Copy the graph inputs the GPU reads into their pinned buffers (host side)."""
        for feed in self.feeds:
            feed.load(tensors[feed.index])

    def enqueue(self, state: CallState, hook: FaultHook | None = None) -> None:
        """Enqueue the whole program (in events mode this waits for the CPU's posts)."""
        side, processor = self.side, self.processor
        compute, copy = side.compute, side.copy
        with torch.inference_mode(), processor.work_context(), torch.cuda.stream(compute):
            copy.wait_stream(compute)  # the copy stream joins (and, when capturing, enters the capture)
            local: Local = self.template[:]
            for feed in self.feeds:
                local[feed.slot] = feed.enqueue()
            timer = side.timer
            for step in self.steps:
                if state.error is not None:
                    state.check()
                if hook is not None:
                    call_hook(hook, 1, step, self.where)
                if type(step) is Run:
                    b = timer.begin(compute) if timer else None
                    run_step(step, local, self.where)
                    if timer:
                        timer.end(b, compute, side.track, "run", step.node.name)
                elif type(step) is Send:
                    step.channel.send(local[step.slot][step.slices], state, side)
                else:
                    assert type(step) is Recv
                    local[step.slot] = step.channel.recv(state, side)
                for i in step.free:
                    local[i] = None
            compute.wait_stream(copy)
            if self.flags is not None:
                self.flags.gpu_write(compute, self.done_flag)
            else:
                self.end.record(compute)

    def warm(self) -> None:
        """Run the program once with every flag raised in advance (flags mode), loading
        every kernel and cuDNN plan now: a kernel's first launch behind a wait the CPU
        has not met yet blocks the enqueueing thread until it is met (CUDA loads kernels
        lazily), which would stall a call."""
        assert self.flags is not None
        flags = self.flags
        flags.raise_all([i for i in range(len(flags.view)) if i != self.done_flag])
        self.enqueue(CallState(0, 60.0, ("", "")))
        torch.cuda.synchronize(self.processor.index)
        flags.clear()

    def capture(self) -> None:
        """Warm up, then capture the program into a CUDA graph (flags mode only)."""
        self.warm()
        flags = self.flags
        assert flags is not None
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, stream=self.side.compute, capture_error_mode="thread_local"):
            self.enqueue(CallState(0, 60.0, ("", "")))
        flags.clear()
        self.graph = graph

    def launch(self) -> None:
        """Replay the captured program (one launch)."""
        with torch.cuda.stream(self.side.compute):
            self.graph.replay()  # type: ignore[union-attr]

    def probe(self, label: str) -> None:
        """Raise an ExecutionError if a device error has reached this program's streams.
        Waits call it through a :class:`~codl.runtime.call.Prober` (rate-limited)."""
        probe_streams((self.side.compute, self.side.copy), label)

    def wait_done(self, timeout_s: float, label: str) -> None:
        """Wait until the GPU has finished the program; an error if it does not within
        ``timeout_s`` (the GPU is then stuck and the session unusable) or a device error
        reaches its streams."""
        deadline = time.monotonic() + timeout_s
        prober = Prober(functools.partial(self.probe, label))

        def check() -> None:
            now = time.monotonic()
            if now > deadline:
                raise ExecutionError(f"{label} did not finish within {timeout_s:g} s")
            prober(now)
        if self.flags is not None:
            self.flags.cpu_wait(self.done_flag, check)
        else:
            while not self.end.query():
                check()
                time.sleep(0)
