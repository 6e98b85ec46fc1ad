"""Co-execution of a plan on two processors at the same time.

``compile(graph, plan, processors)`` builds a :class:`Session` once: the schedule (one
program per processor), every constant sliced to the regions each processor reads and
converted to that processor's type, one typed step per run, send and receive
(:mod:`codl.runtime.steps`), and one channel per region that crosses between the
processors (:mod:`codl.runtime.channels`), all made by :mod:`codl.runtime.prepare`.
Nothing is created per call but the values.

Threads. Processor 0 (the CPU) runs in a persistent worker thread, and processor 1 too
when it is a second CPU group; a GPU is driven from the calling thread, which only
enqueues (:mod:`codl.runtime.device`) or, with ``sync="flags"``, replays the program
from a CUDA graph. When one side has no work and no CPU group is pinned, both programs
run in the calling thread. With a GPU and no thread count given, the CPU side takes one
thread fewer than the cores this process may use, so the driving thread keeps a core
(a 16-thread pool beside it stalled 4-5 ms whenever one of its threads was pre-empted;
15 threads did not, measured on the H200 machine).

Synchronisation: ``"flags"`` (seed 000, :mod:`codl.runtime.sync`; the default with a CUDA
GPU and cuda-python) or ``"events"`` (condition variables, and CUDA events for copies).

Safety. Calls on one session are serialised by a lock (threads may share a session; they
take turns). Every wait has a deadline (``timeout_s``): a side that does not deliver
becomes an :class:`~codl.errors.ExecutionError` naming it. An error on either side, or an
exception in the caller at any point (Ctrl-C, an alarm), abandons the call: both sides
stop at their next step or wait, the GPU's waits are released and its work finishes,
and the next call starts clean (if the caller is interrupted again while that is under
way, the next call finishes it first). Outputs never alias buffers the session reuses.
``fault_hook`` (``hook(processor, step)``, called before every step) injects faults.

Example::

    session = compile(graph, plan, (Processor.parse("cpu", threads=1), Processor.parse("cpu", threads=1)))
    outputs = session(x)
    session(x, trace=True); session.save_trace("run.json")   # open in ui.perfetto.dev
"""

from __future__ import annotations

import contextlib
import functools
import os
import queue
import threading
import time
import warnings
from typing import Any, Mapping

import torch

from ..errors import CodlError, ExecutionError
from ..ir.graph import Graph
from ..plan.types import Plan
from ..processors import Processor, ProcessorKind
from .call import POLL_S, Abort, CallState
from .channels import DeviceChannel
from .device import FaultHook, GpuProgram, GpuSide, InputFeed
from .faults import broken_message, device_errors, is_device_error
from .prepare import Prepared, pair_defaults, track_name
from .reference import bind_inputs, to_processor
from .schedule import Schedule, build_schedule
from .steps import Local, Recv, Run, Send, Step, call_hook, run_step
from .sync import FlagArray, flags_available
from .trace import DeviceTimer, Trace

SYNC_MODES = ("auto", "events", "flags")
SLICE_KIND = {Run: "run", Send: "copy", Recv: "wait"}


class Session:
    """A compiled plan; call it like a function. See the module docstring."""

    def __init__(self, graph: Graph, plan: Plan, processors: tuple[Processor, Processor], sync: str = "auto",
                 timeout_s: float = 60.0, cuda_graph: bool = True) -> None:
        if not isinstance(processors, (tuple, list)) or len(processors) != 2 or \
                not all(isinstance(p, Processor) for p in processors):
            raise CodlError(f"a session takes two processors, (CPU side, other side); got {processors!r:.120}")
        p0, p1 = processors
        if p0.kind is not ProcessorKind.CPU:
            raise CodlError(f"processor 0 must be the CPU (it runs the host side); got {p0.label}")
        if sync not in SYNC_MODES:
            raise CodlError(f"unknown sync mode {sync!r}; supported: {SYNC_MODES}")
        if not timeout_s > 0:
            raise CodlError(f"timeout_s must be positive, got {timeout_s}")
        cuda = p1.kind is ProcessorKind.CUDA
        if sync == "flags" and not cuda:
            raise CodlError("sync='flags' needs a CUDA processor 1; other pairs synchronise with events")
        if sync == "auto":
            sync = "flags" if cuda and flags_available(p1.index) is None else "events"
        p0, p1 = pair_defaults((p0, p1))
        self.graph, self.plan, self.processors, self.sync_mode = graph, plan, (p0, p1), sync
        self.timeout_s = timeout_s
        self.fault_hook: FaultHook | None = None
        self.last_trace: Trace | None = None
        self.labels = (f"processor 0 ({p0.label})", f"processor 1 ({p1.label})")
        self.schedule: Schedule = build_schedule(graph, plan)
        prepared = Prepared(graph, self.schedule, (p0, p1))
        self.channels, n_flags = prepared.channels, prepared.n_flags
        self.flags = FlagArray(n_flags + 1, p1.index) if sync == "flags" else None
        for c in self.channels:
            if isinstance(c, DeviceChannel):
                c.flags = self.flags
        self._gpu_waits = [i for c in self.channels if isinstance(c, DeviceChannel) for i in c.gpu_waits]
        self.programs: tuple[list[Step], list[Step]] = prepared.programs
        self._outputs, self._templates, self._reads = prepared.outputs, prepared.templates, prepared.reads
        self._internal = {t.untyped_storage().data_ptr() for c in self.channels for t in c.internal()}
        self._internal |= {t.untyped_storage().data_ptr() for t in prepared.consts[0].values()}
        self._tracks = (track_name(0, p0), track_name(1, p1))
        busy = [any(type(s) is Run for s in self.programs[p]) for p in (0, 1)]
        pinned = any(p.cores for p in self.processors)
        # With every node on one side there is nothing to overlap: run both programs in
        # the calling thread (processor 1 first: it never waits on processor 0 then).
        # Not when a CPU group is pinned to cores: only its own thread may carry that.
        self._inline = not (busy[0] and busy[1]) and not pinned
        self._threaded = (not self._inline, not self._inline and p1.kind is ProcessorKind.CPU)
        self.gpu: GpuProgram | None = None
        if cuda and busy[1]:
            side = GpuSide(p1, self._tracks[1], f"{p1.label} copies")
            feeds = [InputFeed(i, i, graph.inputs[i], p1) for i in self._reads[1]]
            self.gpu = GpuProgram(p1, self.programs[1], feeds, self._templates[1], side, self.flags,
                                  n_flags, f" on {self.labels[1]}")
        p1.synchronize()  # constants are in place before work on another stream reads them
        if self.gpu is not None and self.flags is not None and not cuda_graph:
            self.gpu.warm()
        elif self.gpu is not None and self.flags is not None:
            try:
                self.gpu.capture()
            except Exception as e:  # noqa: BLE001 - eager enqueueing still works; say why
                warnings.warn(f"codl: running the GPU side without a CUDA graph ({type(e).__name__}: {e})", stacklevel=2)
                torch.cuda.synchronize(p1.index)
                self.flags.clear()
                self.gpu.graph = None
        self._probe = None if self.gpu is None else functools.partial(self.gpu.probe, self.labels[1])
        self._lock = threading.Lock()
        self._pending: CallState | None = None
        self._broken: str | None = None
        self._closed = False
        self._jobs: list[queue.SimpleQueue] = [queue.SimpleQueue(), queue.SimpleQueue()]
        self._threads = [threading.Thread(target=self._work, args=(p,), name=f"codl-proc{p}", daemon=True)
                         for p in (0, 1) if self._threaded[p]]
        for t in self._threads:
            t.start()

    # --- calls --------------------------------------------------------------------------
    def __call__(self, *inputs: torch.Tensor | Mapping[str, torch.Tensor], trace: bool = False) -> list[torch.Tensor]:
        """Run one inference; outputs come back on the CPU, in processor 0's type. With
        ``trace=True`` the call is recorded in ``self.last_trace`` (see :meth:`save_trace`)."""
        tensors = bind_inputs(self.graph, inputs)
        with self._lock:
            if self._closed:
                raise CodlError("this session is closed")
            if self._broken is not None:
                raise ExecutionError(f"this session cannot be used any more: {self._broken}")
            self._settle()
            state = CallState(len(self.channels), self.timeout_s, self.labels)
            self._pending = state
            try:
                outputs = self._call(state, tensors, trace)
            except BaseException as e:
                self._abandon(state, e)
                if isinstance(e, CodlError) or not isinstance(e, Exception):
                    raise
                raise ExecutionError(f"co-execution failed: {e}") from e
            self._pending = None
            return outputs

    def _call(self, state: CallState, tensors: list[torch.Tensor], trace: bool) -> list[torch.Tensor]:
        t0 = time.perf_counter()
        record = Trace(list(self._tracks), meta={"graph": self.graph.name, "sync": self.sync_mode}) if trace else None
        gpu = self.gpu
        if gpu is not None:
            state.gpu_started = True
            state.probe = self._probe
            gpu.load(tensors)
            if record is not None:
                record.tracks.append(gpu.side.copy_track)
                gpu.side.timer = DeviceTimer(record, gpu.side.compute, t0)
        try:
            if self._inline:
                self._drive(state, tensors, record, t0)
                state.results[0] = self._on_thread(0, state, tensors, record, t0)
            else:
                for proc in (0, 1):
                    if self._threaded[proc]:
                        self._jobs[proc].put((state, tensors, record, t0))
                if not self._threaded[1]:
                    try:
                        self._drive(state, tensors, record, t0)
                    except Abort:
                        pass
                    except Exception as e:  # noqa: BLE001 - stop the other side, raise below
                        state.fail(e)
                for proc in (0, 1):
                    if self._threaded[proc]:
                        state.wait_finished(proc)
            if state.error is not None:
                raise state.error
            if gpu is not None:
                gpu.wait_done(self.timeout_s, self.labels[1])
                if record is not None:
                    gpu.side.timer.resolve()  # type: ignore[union-attr]
        finally:
            if gpu is not None:
                gpu.side.timer = None
        if record is not None:
            record.total_ms = (time.perf_counter() - t0) * 1e3
            record.meta["cuda_graph"] = False
            self.last_trace = record
        return state.results[0]

    def _drive(self, state: CallState, tensors: list[torch.Tensor], record: Trace | None, t0: float) -> None:
        """Processor 1's side in the calling thread: enqueue or launch the GPU program, or
        run another device's program."""
        if self.gpu is not None:
            if self.gpu.graph is not None and record is None and self.fault_hook is None:
                self.gpu.launch()
            else:
                self.gpu.enqueue(state, self.fault_hook)
        elif self.processors[1].kind is not ProcessorKind.CUDA and self.programs[1]:
            self._on_thread(1, state, tensors, record, t0)

    def _on_thread(self, proc: int, state: CallState, tensors: list[torch.Tensor], record: Trace | None,
                   t0: float) -> Any:
        """A program run in the calling thread (inline), with its processor's settings."""
        p = self.processors[proc]
        previous = torch.get_num_threads()
        try:
            p.activate()
            return self._run_program(proc, state, tensors, record, t0)
        finally:
            torch.set_num_threads(previous)  # the caller's thread count is the caller's

    def _run_program(self, proc: int, state: CallState, tensors: list[torch.Tensor], record: Trace | None,
                     t0: float) -> list[torch.Tensor] | None:
        """Run a host-driven program (a CPU group, or a device without a GPU program)."""
        processor = self.processors[proc]
        steps = self.programs[proc]
        local: Local = self._templates[proc][:]
        for i in self._reads[proc]:
            local[i] = to_processor(tensors[i], processor)
        hook, where, track = self.fault_hook, f" on {self.labels[proc]}", self._tracks[proc]
        context = processor.work_context()
        with torch.inference_mode(), context:
            for step in steps:
                if state.error is not None:
                    raise Abort
                if hook is not None:
                    call_hook(hook, proc, step, where)
                start = time.perf_counter() if record is not None else 0.0
                kind = type(step)
                if kind is Run:
                    run_step(step, local, where)  # type: ignore[arg-type]
                elif kind is Send:
                    step.channel.send(local[step.slot][step.slices], state, None)  # type: ignore[union-attr]
                else:
                    local[step.slot] = step.channel.recv(state, None)  # type: ignore[union-attr]
                for i in step.free:
                    local[i] = None
                if record is not None:
                    flow = None if kind is Run else step.channel.index  # type: ignore[union-attr]
                    record.add(track, SLICE_KIND[kind], step.name, (start - t0) * 1e3,
                               (time.perf_counter() - t0) * 1e3, "host", flow, kind is Recv)
            if proc == 0:
                return [self._own(f.get(local)) for f in self._outputs]
        return None

    def _own(self, t: torch.Tensor) -> torch.Tensor:
        """``t``, or a copy of it where it shares memory with a buffer the session reuses."""
        return t.clone() if t.untyped_storage().data_ptr() in self._internal else t

    def _work(self, proc: int) -> None:
        """A CPU group's worker thread: runs its program for each call posted to it."""
        self.processors[proc].activate()
        jobs = self._jobs[proc]
        while True:
            job = jobs.get()
            if job is None:
                return
            if isinstance(job, threading.Event):  # a barrier: every earlier call has finished
                job.set()
                continue
            state, tensors, record, t0 = job
            result = None
            if state.error is None:
                try:
                    result = self._run_program(proc, state, tensors, record, t0)
                except Abort:
                    pass
                except BaseException as e:  # noqa: BLE001 - handed to the caller
                    state.fail(e)
            state.finish(proc, result)

    # --- failure and recovery ---------------------------------------------------------------
    def _abandon(self, state: CallState, error: BaseException) -> None:
        """Stop both sides of ``state``'s call and leave the session ready for the next."""
        state.fail(error)
        deadline = time.monotonic() + self.timeout_s
        for proc in (0, 1):
            if self._threaded[proc] and not self._barrier(proc, deadline):
                self._broken = f"{self.labels[proc]} did not stop within {self.timeout_s:g} s"
                raise ExecutionError(self._broken) from error
        if self.gpu is not None and state.gpu_started:
            if self.flags is not None:
                self.flags.raise_all(self._gpu_waits)
            try:
                idle = self._gpu_idle(deadline)
            except RuntimeError as e:
                if not is_device_error(e):
                    raise
                self._broken = broken_message(self.labels[1], e)
                raise ExecutionError(self._broken) from error
            if not idle:
                self._broken = f"{self.labels[1]} did not finish its work within {self.timeout_s:g} s"
                raise ExecutionError(self._broken) from error
            if self.flags is not None:
                self.flags.clear()
        self._pending = None

    def _settle(self) -> None:
        """Finish abandoning a call whose caller was interrupted while abandoning it."""
        if self._pending is not None:
            self._abandon(self._pending, self._pending.error or ExecutionError("the previous call was interrupted"))

    def _barrier(self, proc: int, deadline: float) -> bool:
        """Wait until worker ``proc`` has finished every call posted to it so far."""
        done = threading.Event()
        self._jobs[proc].put(done)
        while not done.wait(POLL_S):
            if time.monotonic() > deadline:
                return False
        return True

    def _gpu_idle(self, deadline: float) -> bool:
        """Wait until the GPU side's streams have run everything enqueued on them."""
        side = self.gpu.side  # type: ignore[union-attr]
        events = [torch.cuda.Event(), torch.cuda.Event()]
        events[0].record(side.compute)
        events[1].record(side.copy)
        while not all(e.query() for e in events):
            if time.monotonic() > deadline:
                return False
            time.sleep(0.0001)
        return True

    # --- lifetime and traces -------------------------------------------------------------------
    def save_trace(self, path: str | os.PathLike) -> None:
        """Write the last traced call (``session(x, trace=True)``) as trace-event JSON for
        ui.perfetto.dev or chrome://tracing."""
        if self.last_trace is None:
            raise CodlError("no traced call yet: call the session with trace=True first")
        self.last_trace.save(path)

    def close(self) -> None:
        """Finish any call in flight, stop the worker threads and wait for them."""
        with self._lock:
            if self._closed:
                return
            with contextlib.suppress(CodlError):
                self._settle()
            self._closed = True
            for proc in (0, 1):
                if self._threaded[proc]:
                    self._jobs[proc].put(None)
            for t in self._threads:
                t.join(self.timeout_s)

    def __enter__(self) -> "Session":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def compile(graph: Graph, plan: Plan, processors: tuple[Processor, Processor], sync: str = "auto",  # noqa: A001
            timeout_s: float = 60.0, cuda_graph: bool = True) -> Session:
    """Prepare ``plan`` for running on ``processors`` (CPU first). ``sync``: "flags"
    (fine-grained, CUDA), "events", or "auto" (flags where they work). ``timeout_s``:
    the longest wait for the other processor before the call fails. ``cuda_graph``:
    replay the GPU side from a CUDA graph (flags mode). A GPU that is missing, busy or
    out of memory is a one-line CodlError."""
    gpu = processors[1] if isinstance(processors, (tuple, list)) and len(processors) == 2 else None
    with device_errors(gpu if isinstance(gpu, Processor) else None, "compile this plan"):
        return Session(graph, plan, processors, sync, timeout_s, cuda_graph)


__all__ = ["Session", "compile", "SYNC_MODES", "pair_defaults"]
