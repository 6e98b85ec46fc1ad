"""Co-execution of a plan on two processors at the same time.

``compile(graph, plan, processors)`` builds a :class:`Session` once: the schedule (one
program per processor), every constant sliced to the regions each processor reads and
converted to that processor's data type, one kernel per step, and one channel per region
that crosses between the processors (with its staging buffer, pinned when a GPU is on
either end). A persistent worker thread runs processor 0's program; the calling thread
runs processor 1's (for a GPU it only enqueues work on the stream). No thread is created
per inference or per op.

Synchronisation, ``sync="events"``: a CPU receiver waits until the sender has posted the
region (and, from a GPU, until the copy's CUDA event completes); a GPU receiver's driver
thread waits until the CPU has written the staging buffer, then enqueues the copy.
``sync="flags"`` (seed 000, :mod:`codl.runtime.sync`): the GPU stream raises a flag in
pinned memory after each outgoing copy and the CPU spins on it; incoming copies are
enqueued behind a stream wait on a flag the CPU raises, so the driver thread never blocks
and enqueues the whole inference at once. An error on either side aborts the inference
on both (flags the GPU still waits on are released) and is raised to the caller.

Example::

    session = compile(graph, plan, (Processor.parse("cpu", threads=1), Processor.parse("cpu", threads=1)))
    outputs = session(x)
"""

from __future__ import annotations

import contextlib
import queue
import threading
import time
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np
import torch

from ..errors import CodlError, ExecutionError
from ..ir.graph import Graph
from ..ir.regions import Box, box_shape, full_box, intersect, is_empty, relative
from ..ops import family
from ..plan.types import Plan
from ..processors import Processor, ProcessorKind
from .reference import bind_inputs, to_processor
from .channels import Aborted, Channel, Sync
from .schedule import InputSource, RunStep, Schedule, SendStep, build_schedule
from .sync import FlagArray

SYNC_MODES = ("events", "flags")


# How a step obtains one input (tuples, for a cheap hot loop). Constants sit in local
# slots too (filled once, in each processor's template), so they are LOCAL.
#   (LOCAL, slot)                     a whole local value
#   (SLICE, slot, slices)             a view into one local piece
#   (COPY, slot, slices)              a copy of a view (outputs must not alias staging buffers)
#   (ASSEMBLE, parts, shape, cl)      a new buffer filled from pieces: parts = [(slot, src, dst)]
LOCAL, SLICE, COPY, ASSEMBLE = range(4)


@dataclass
class StepRecord:
    """One step of one inference, in ms since the call started. ``clock`` says how it was
    timed: "host" (CPU steps: the worker's clock around the step) or "device" (GPU steps:
    CUDA events around the enqueued work, placed on the host clock by an event recorded
    when the GPU side started enqueueing)."""

    processor: int
    kind: str  # "run", "send", "recv"
    name: str
    start_ms: float
    end_ms: float
    clock: str = "host"


class Session:
    """A compiled plan; call it like a function. See the module docstring."""

    def __init__(self, graph: Graph, plan: Plan, processors: tuple[Processor, Processor], sync: str = "events") -> None:
        if processors[0].kind is not ProcessorKind.CPU:
            raise CodlError(f"processor 0 must be the CPU (it runs the host side); got {processors[0].label}")
        if sync not in SYNC_MODES:
            raise CodlError(f"unknown sync mode {sync!r}; supported: {SYNC_MODES}")
        if sync == "flags" and processors[1].kind is not ProcessorKind.CUDA:
            raise CodlError("sync='flags' needs a CUDA processor 1; the CPU pair synchronises with events")
        self.graph, self.plan, self.processors, self.sync_mode = graph, plan, processors, sync
        self.schedule: Schedule = build_schedule(graph, plan)
        self.sync = Sync(len(self.schedule.channels))
        self.flags = FlagArray(len(self.schedule.channels), processors[1].index) if sync == "flags" else None
        self.channels = [Channel(ch, box, processors[sender], processors[1 - sender], self.sync, self.flags)
                         for ch, (sender, _, box) in enumerate(self.schedule.channels)]
        self.trace: list[StepRecord] | None = None
        self._device_trace: tuple | None = None
        self._slots: dict[tuple[str, str], int] = {("own", s.name): i for i, s in enumerate(graph.inputs)}
        self._consts: tuple[dict[int, torch.Tensor], dict[int, torch.Tensor]] = ({}, {})
        self._compiled = [self._compile(proc) for proc in (0, 1)]
        # Outputs own their memory: a received piece lives in a staging buffer reused by the next call.
        self._outputs = [self._fetch(src, 0, {}, copy=True) for src in self.schedule.programs[0].outputs]
        inputs = {s.name for s in graph.inputs}
        self._reads_inputs = [any(isinstance(st, RunStep) and any(src.tensor in inputs for src in st.inputs)
                                  for st in self.schedule.programs[p].steps)
                              or any(src.tensor in inputs for src in self.schedule.programs[p].outputs) for p in (0, 1)]
        self._templates: list[list[torch.Tensor | None]] = []
        for consts in self._consts:
            template: list[torch.Tensor | None] = [None] * len(self._slots)
            for slot, value in consts.items():
                template[slot] = value
            self._templates.append(template)
        # With every node on one side there is nothing to overlap: run both programs in
        # the calling thread, one after the other (processor 1 first: it never waits on
        # processor 0 then), and skip the hand-off to the worker.
        # (Not when a CPU group is pinned to cores: only its own thread may carry that.)
        busy = [any(isinstance(s, RunStep) for s in self.schedule.programs[p].steps) for p in (0, 1)]
        pinned = any(p.cores for p in processors)
        self._inline = not (busy[0] and busy[1]) and not pinned
        self.processors[1].synchronize()  # constants are in place before work on another stream reads them
        # Processor 0 always has its own thread; processor 1 too when it is a CPU group
        # (a GPU is driven from the calling thread, which only enqueues).
        self._threaded = (not self._inline, not self._inline and processors[1].kind is ProcessorKind.CPU)
        self._queues: list[tuple[queue.Queue, queue.Queue]] = [(queue.Queue(), queue.Queue()) for _ in (0, 1)]
        for proc in (0, 1):
            if self._threaded[proc]:
                threading.Thread(target=self._work, args=(proc,), name=f"codl-proc{proc}", daemon=True).start()

    # --- preparation ------------------------------------------------------------------
    def _compile(self, proc: int) -> list[tuple[Any, ...]]:
        graph = self.graph
        program = self.schedule.programs[proc]
        consts = self._consts[proc]
        steps: list[tuple[Any, ...]] = []
        for step, frees in zip(program.steps, program.frees):
            free = [self._slot(k) for k in frees]
            if isinstance(step, RunStep):
                node = step.node
                fetches = [self._fetch(src, proc, consts) for src in step.inputs]
                out = graph.spec(node.outputs[0])
                whole = step.box == full_box(out.shape) or len(node.outputs) > 1
                fam = family(node.op)
                kernel = fam.kernel(node) if whole else fam.partial_kernel(node, [graph.spec(i) for i in node.inputs], out, step.box)
                outs = [self._slot(("own", o)) for o in node.outputs]
                if all(f[0] == LOCAL for f in fetches):  # the common case: plain slot reads
                    steps.append(("run", node, kernel, [f[1] for f in fetches], outs, free))
                else:
                    steps.append(("gather", node, kernel, fetches, outs, free))
            elif isinstance(step, SendStep):
                origin = self.schedule.held[proc][step.tensor]
                steps.append(("send", step.tensor, self.channels[step.channel],
                              (self._slot(("own", step.tensor)), relative(step.box, origin)), None, free))
            else:
                steps.append(("recv", step.tensor, self.channels[step.channel], self._slot(("recv", step.tensor)), None, free))
        return steps

    def _slot(self, key: tuple[str, str]) -> int:
        return self._slots.setdefault(key, len(self._slots))

    def _piece_box(self, piece: tuple[str, str], proc: int) -> Box:
        kind, name = piece
        if kind == "own":
            return self.schedule.held[proc][name]
        return next(box for sender, t, box in self.schedule.channels if t == name and sender != proc)

    def _fetch(self, src: InputSource, proc: int, consts: dict[int, torch.Tensor],
               copy: bool = False) -> tuple[Any, ...]:
        if src.pieces[0][0] == "const":
            slot = self._slot(("const", f"{proc}:{src.tensor}:{src.box}"))
            if slot not in consts:
                value = torch.from_numpy(np.array(self.graph.constants[src.tensor]))
                value = value[relative(src.box, full_box(value.shape))]
                consts[slot] = to_processor(value.contiguous(), self.processors[proc])
            return (LOCAL, slot)
        parts = []
        for piece in src.pieces:
            origin = self._piece_box(piece, proc)
            inter = intersect(src.box, origin)
            if not is_empty(inter):
                parts.append((piece, origin, relative(inter, origin), relative(inter, src.box)))
        if len(parts) == 1:
            piece, origin, src_slices, _ = parts[0]
            if copy and piece[0] == "recv":
                return (COPY, self._slot(piece), src_slices)
            return (LOCAL, self._slot(piece)) if origin == src.box else (SLICE, self._slot(piece), src_slices)
        return (ASSEMBLE, [(self._slot(p), a, b) for p, _, a, b in parts], box_shape(src.box),
                self.processors[proc].channels_last)

    # --- execution ----------------------------------------------------------------------
    def __call__(self, *inputs: torch.Tensor | Mapping[str, torch.Tensor], trace: bool = False) -> list[torch.Tensor]:
        """Run one inference; outputs come back on the CPU, in processor 0's type. With
        ``trace=True`` the host-clock timing of every step is kept in ``self.trace``."""
        tensors = bind_inputs(self.graph, inputs)
        self.trace = [] if trace else None
        with self.sync.cond:
            self.sync.generation += 1
            self.sync.error = None
        t0 = time.perf_counter()
        self._device_trace = None
        with torch.inference_mode(), self.processors[1].work_context():
            outputs = self._call(tensors, t0)
        if self._device_trace is not None:
            proc, origin_ms, origin, pending = self._device_trace
            self.processors[proc].synchronize()
            self.trace += [StepRecord(proc, kind, name, origin_ms + origin.elapsed_time(b),  # type: ignore[operator]
                                      origin_ms + origin.elapsed_time(e), "device") for kind, name, b, e in pending]
        return outputs

    def _call(self, tensors: list[torch.Tensor], t0: float) -> list[torch.Tensor]:
        if not self._compiled[0] and not self._compiled[1]:
            raise CodlError("this session is closed")
        if self._inline:
            return self._run_inline(tensors, t0)
        for proc in (0, 1):
            if self._threaded[proc]:
                self._queues[proc][0].put((tensors, t0))
        own_error: BaseException | None = None
        if not self._threaded[1]:
            try:
                self._run(1, tensors, t0)
            except Aborted:
                pass
            except BaseException as e:  # noqa: BLE001 - re-raised below, after the worker stops
                own_error = e
                self.sync.abort(e)
        results = [self._queues[proc][1].get() if self._threaded[proc] else None for proc in (0, 1)]
        result = results[0]
        # No device-wide synchronisation on success: every piece of GPU work feeds an
        # output or a region processor 0 has waited for, and the stream runs in order, so
        # nothing that matters (no copy out of a staging buffer either) is still in flight.
        error = own_error or self.sync.error
        if error is not None:
            if self.flags is not None:
                self.flags.release_all(self.sync.generation)  # free GPU waits that will not be met
            self.processors[1].synchronize()
            if isinstance(error, CodlError):
                raise error
            raise ExecutionError(f"co-execution failed: {error}") from error
        return result

    def _run_inline(self, tensors: list[torch.Tensor], t0: float) -> list[torch.Tensor]:
        previous = torch.get_num_threads()
        try:
            if self._compiled[1]:
                self.processors[1].activate()
                self._run(1, tensors, t0)
            self.processors[0].activate()
            with self._cpu_context(0):
                return self._run(0, tensors, t0)  # type: ignore[return-value]
        except BaseException:
            self.processors[1].synchronize()  # leave no work in flight behind an error
            raise
        finally:
            torch.set_num_threads(previous)  # the caller's thread count is the caller's

    def close(self) -> None:
        """Stop the worker threads (the session cannot run afterwards)."""
        for proc in (0, 1):
            if self._threaded[proc]:
                self._queues[proc][0].put(None)
        self._threaded = (False, False)
        self._inline, self._compiled = False, [[], []]

    def __enter__(self) -> "Session":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _cpu_context(self, proc: int) -> "contextlib.AbstractContextManager[object]":
        """A CPU processor's work context (codl's own CPU convs) for the thread running
        its program; a GPU's is entered where its work is enqueued (``__call__``)."""
        p = self.processors[proc]
        return p.work_context() if p.kind is ProcessorKind.CPU else contextlib.nullcontext()

    def _work(self, proc: int) -> None:
        self.processors[proc].activate()
        jobs, done = self._queues[proc]
        while True:
            job = jobs.get()
            if job is None:
                return
            tensors, t0 = job
            try:
                with torch.inference_mode(), self._cpu_context(proc):
                    result = self._run(proc, tensors, t0)
                done.put(result)
            except Aborted:
                done.put(None)
            except BaseException as e:  # noqa: BLE001 - handed to the caller
                self.sync.abort(e)
                done.put(None)

    def _run(self, proc: int, tensors: list[torch.Tensor], t0: float) -> list[torch.Tensor] | None:
        processor = self.processors[proc]
        steps = self._compiled[proc]
        if not steps and proc == 1:
            return None
        local = self._templates[proc][:]
        if self._reads_inputs[proc]:
            for i, t in enumerate(tensors):
                local[i] = to_processor(t, processor)
        record = self.trace.append if self.trace is not None else None
        device_clock = record is not None and processor.kind is ProcessorKind.CUDA
        if device_clock:
            timing = lambda: torch.cuda.Event(enable_timing=True)  # noqa: E731
            origin = timing()
            origin.record()
            pending: list[tuple[str, str, torch.cuda.Event, torch.cuda.Event]] = []
            self._device_trace = (proc, (time.perf_counter() - t0) * 1e3, origin, pending)
        # callers hold torch.inference_mode()
        # step: (kind, node or tensor name, kernel or channel, inputs or slot, output slots, slots to free)
        for kind, name, action, arg, outs, free in steps:
            start = time.perf_counter() if record else 0.0
            if device_clock:
                begin = timing()
                begin.record()
            if kind == "run" or kind == "gather":
                args = [local[i] for i in arg] if kind == "run" else [_gather(f, local) for f in arg]
                try:
                    result = action(*args)
                except Exception as e:
                    raise ExecutionError.of_node(name, args, e, f" on processor {proc} ({processor.label})") from e
                if isinstance(result, torch.Tensor):
                    local[outs[0]] = result
                else:
                    for o, r in zip(outs, result):
                        local[o] = r
            elif kind == "send":
                slot, slices = arg
                action.send(local[slot][slices])
            else:
                local[arg] = action.recv()
            for i in free:
                local[i] = None
            if record:
                run = kind == "run" or kind == "gather"
                label = name.name if run else name
                if device_clock:
                    end = timing()
                    end.record()
                    pending.append(("run" if run else kind, label, begin, end))
                else:
                    record(StepRecord(proc, "run" if run else kind, label, (start - t0) * 1e3,
                                      (time.perf_counter() - t0) * 1e3))
        if proc == 0:
            return [_gather(f, local) for f in self._outputs]
        return None


def _gather(f: tuple[Any, ...], local: list[torch.Tensor | None]) -> torch.Tensor:
    mode = f[0]
    if mode == LOCAL:
        return local[f[1]]  # type: ignore[return-value]
    if mode == SLICE:
        return local[f[1]][f[2]]  # type: ignore[index]
    if mode == COPY:
        return local[f[1]][f[2]].clone()  # type: ignore[index]
    _, parts, shape, channels_last = f
    first = local[parts[0][0]]
    fmt = torch.channels_last if channels_last and len(shape) == 4 else torch.contiguous_format
    buf = torch.empty(shape, dtype=first.dtype, device=first.device).contiguous(memory_format=fmt)  # type: ignore[union-attr]
    for slot, src, dst in parts:
        buf[dst] = local[slot][src]  # type: ignore[index]
    return buf


def compile(graph: Graph, plan: Plan, processors: tuple[Processor, Processor], sync: str = "events") -> Session:  # noqa: A001
    """Prepare ``plan`` for running on ``processors`` (CPU first) with ``sync`` "events"
    or "flags" (fine-grained, CUDA only)."""
    return Session(graph, plan, processors, sync)


__all__ = ["Session", "StepRecord", "compile"]
