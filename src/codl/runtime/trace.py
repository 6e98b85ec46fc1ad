"""Where one call's time goes: a slice per op, copy, conversion and wait on each track.

``session(x, trace=True)`` keeps a :class:`Trace` of that call; ``session.save_trace(path)``
writes it as trace-event JSON, which ui.perfetto.dev and chrome://tracing open: one
track per processor (and one for a GPU's copy stream), named with its device, type,
threads and SM limit; a slice for every step; flow arrows from each send to its receive.
``Trace.summary()`` gives per track the time busy computing, copying (conversions
included) and waiting, in ms.

Host slices are timed with the host clock around the step; GPU slices with CUDA events
around the enqueued work, placed on the host clock by an event recorded when the GPU
side started enqueueing (``DeviceTimer``). Nothing is recorded when tracing is off.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from typing import Any

import torch

KINDS = ("run", "copy", "convert", "wait")


@dataclass(frozen=True)
class TraceEvent:
    """One slice: ``kind`` is run (an op), copy, convert or wait; times in ms since the
    call started; ``flow`` is the channel index on the slices that send and receive it."""

    track: str
    kind: str
    name: str
    start_ms: float
    end_ms: float
    clock: str = "host"  # "host" or "device"
    flow: int | None = None
    flow_end: bool = False  # True on the receiving slice


@dataclass
class Trace:
    """One traced call: its slices and the tracks' display names."""

    tracks: list[str]  # one per processor / copy stream, named with device, type, threads, SM limit
    events: list[TraceEvent] = field(default_factory=list)
    total_ms: float = 0.0
    meta: dict[str, Any] = field(default_factory=dict)

    def add(self, track: str, kind: str, name: str, start_ms: float, end_ms: float, clock: str = "host",
            flow: int | None = None, flow_end: bool = False) -> None:
        self.events.append(TraceEvent(track, kind, name, start_ms, end_ms, clock, flow, flow_end))

    def summary(self) -> dict[str, dict[str, float]]:
        """Per track: ms busy (ops), copying (copies and conversions), waiting, and the
        time from its first slice's start to its last slice's end."""
        out: dict[str, dict[str, float]] = {}
        for track in self.tracks:
            evs = [e for e in self.events if e.track == track]
            if not evs:
                continue
            dur = {k: sum(e.end_ms - e.start_ms for e in evs if e.kind == k) for k in KINDS}
            out[track] = {"busy_ms": dur["run"], "copying_ms": dur["copy"] + dur["convert"], "waiting_ms": dur["wait"],
                          "span_ms": max(e.end_ms for e in evs) - min(e.start_ms for e in evs)}
        return out

    def to_json(self) -> dict[str, Any]:
        """Trace-event JSON (the Chrome/Perfetto format), times in microseconds."""
        tid = {t: i for i, t in enumerate(self.tracks)}
        out: list[dict[str, Any]] = [{"ph": "M", "pid": 1, "name": "process_name", "args": {"name": "codl session"}}]
        for t, i in tid.items():
            out.append({"ph": "M", "pid": 1, "tid": i, "name": "thread_name", "args": {"name": t}})
            out.append({"ph": "M", "pid": 1, "tid": i, "name": "thread_sort_index", "args": {"sort_index": i}})
        for e in self.events:
            ts, dur = e.start_ms * 1e3, max(e.end_ms - e.start_ms, 0.0) * 1e3
            out.append({"ph": "X", "pid": 1, "tid": tid[e.track], "name": e.name, "cat": e.kind, "ts": ts, "dur": dur,
                        "args": {"clock": e.clock}})
            if e.flow is not None:
                flow = {"pid": 1, "tid": tid[e.track], "name": "exchange", "cat": "exchange", "id": e.flow}
                if e.flow_end:
                    out.append({**flow, "ph": "f", "bp": "e", "ts": ts})
                else:
                    out.append({**flow, "ph": "s", "ts": ts + dur / 2})
        return {"traceEvents": out, "displayTimeUnit": "ms",
                "otherData": {**self.meta, "total_ms": self.total_ms, "summary": self.summary()}}

    def save(self, path: str | os.PathLike) -> None:
        """Write the trace-event JSON to ``path`` (atomically: a temporary file, then a rename)."""
        tmp = f"{os.fspath(path)}.tmp"
        with open(tmp, "w") as f:
            json.dump(self.to_json(), f)
        os.replace(tmp, path)


class DeviceTimer:
    """CUDA events around enqueued GPU work, resolved onto the host clock after the call."""

    def __init__(self, trace: Trace, stream: torch.cuda.Stream, t0: float) -> None:
        self.trace = trace
        self.origin = torch.cuda.Event(enable_timing=True)
        self.origin.record(stream)
        self.origin_ms = (time.perf_counter() - t0) * 1e3
        self.pending: list[tuple[str, str, str, torch.cuda.Event, torch.cuda.Event, int | None, bool]] = []

    def begin(self, stream: torch.cuda.Stream) -> torch.cuda.Event:
        event = torch.cuda.Event(enable_timing=True)
        event.record(stream)
        return event

    def end(self, begin: torch.cuda.Event, stream: torch.cuda.Stream, track: str, kind: str, name: str,
            flow: int | None = None, flow_end: bool = False) -> None:
        event = torch.cuda.Event(enable_timing=True)
        event.record(stream)
        self.pending.append((track, kind, name, begin, event, flow, flow_end))

    def resolve(self) -> None:
        """Add the slices to the trace (the GPU must have finished them)."""
        for track, kind, name, b, e, flow, flow_end in self.pending:
            self.trace.add(track, kind, name, self.origin_ms + self.origin.elapsed_time(b),
                           self.origin_ms + self.origin.elapsed_time(e), "device", flow, flow_end)
        self.pending = []
