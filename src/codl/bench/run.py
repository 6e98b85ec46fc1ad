"""``codl run``, ``codl check`` and ``codl trace``: a graph timed on one processor, or a
plan on its two, with the outputs checked against the reference; one traced call.

The timing helpers are in :mod:`codl.timing`; they keep their names here too, for the
tests and scripts that import them from this module.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch

from ..ir.graph import Graph
from ..plan.types import Plan
from ..processors import Processor
from ..runtime import ReferenceRunner
from ..runtime.session import compile
from ..runtime.trace import Trace
from ..timing import (
    LatencyStats,
    _host_block,
    host_launch_ms,
    time_back_to_back,
    time_calls,
)
from .accuracy import check_elements, check_outputs, reference_outputs, tolerance

__all__ = ["Timed", "run_single", "run_plan", "check_plan", "trace_plan", "LatencyStats", "time_calls", "time_back_to_back",
           "host_launch_ms", "_host_block"]


@dataclass
class Timed:
    """Measured latencies (ms), their statistics, and the output check (``None`` when
    not asked for; else :func:`codl.bench.accuracy.check_outputs`)."""

    samples_ms: list[float]
    stats: LatencyStats
    check: dict[str, Any] | None


def run_single(graph: Graph, processor: Processor, inputs: list[torch.Tensor], iters: int, warmup: int,
               check: bool = True, module: torch.nn.Module | None = None, onnx_path: str | None = None) -> Timed:
    """``graph`` on ``processor`` with its inputs already on the device: one checked call
    (against ``module`` or the ONNX file, see :func:`reference_outputs`), then ``iters``
    timed calls after ``warmup``."""
    runner = ReferenceRunner(graph, processor)
    device_inputs = [t.to(processor.device, processor.torch_dtype) for t in inputs]
    outs = runner(*device_inputs)
    processor.synchronize()
    checked = check_outputs(graph, module, inputs, outs, processor, onnx_path) if check else None
    samples = time_calls(lambda: runner(*device_inputs), processor, iters, warmup)
    return Timed(samples, LatencyStats.of(samples), checked)


def run_plan(graph: Graph, plan: Plan, processors: tuple[Processor, Processor], inputs: list[torch.Tensor],
             iters: int, warmup: int, check: bool = True, module: torch.nn.Module | None = None,
             onnx_path: str | None = None) -> Timed:
    """``plan`` co-executed on ``processors`` (host inputs, outputs back on the host):
    one call checked at the looser tolerance of the two processors, then ``iters`` timed
    calls after ``warmup``."""
    with compile(graph, plan, processors) as session:
        outs = session(*inputs)
        worst = max(processors, key=tolerance)
        checked = check_outputs(graph, module, inputs, outs, worst, onnx_path) if check else None
        samples = time_calls(lambda: session(*inputs), processors[0], iters, warmup)
    return Timed(samples, LatencyStats.of(samples), checked)


def check_plan(graph: Graph, plan: Plan, processors: tuple[Processor, Processor], inputs: list[torch.Tensor],
               module: torch.nn.Module | None = None, onnx_path: str | None = None, rtol: float | None = None,
               atol: float | None = None) -> dict[str, Any]:
    """``plan``'s co-executed outputs element by element against the reference
    (:func:`codl.bench.accuracy.check_elements`, with ``against`` naming the reference).
    Default ``rtol``: the looser tolerance of the two processors' types; default
    ``atol``: ``rtol`` times the largest reference magnitude."""
    refs, against = reference_outputs(graph, module, inputs, onnx_path)
    with compile(graph, plan, processors) as session:
        outs = session(*inputs)
    rtol = rtol if rtol is not None else max(tolerance(p) for p in processors)
    atol = atol if atol is not None else rtol * max(float(r.abs().max()) for r in refs)
    return {"against": against, **check_elements(outs, refs, rtol, atol)}


def trace_plan(graph: Graph, plan: Plan, processors: tuple[Processor, Processor], inputs: list[torch.Tensor],
               warmup: int, out: str | os.PathLike) -> Trace:
    """One traced call of ``plan`` after ``warmup`` untraced ones; its trace-event JSON
    is written to ``out`` (ui.perfetto.dev, chrome://tracing)."""
    with compile(graph, plan, processors) as session:
        for _ in range(warmup):
            session(*inputs)
        session(*inputs, trace=True)
        session.save_trace(out)
        return session.last_trace
