"""Benchmark: what the co-execution session costs over the single-processor reference
when the plan puts every node on one processor.

For each model and device, three ways of running the same graph, alternating call by
call (reference, ref+io, session, reference, ...) so that drifts of the machine hit all
three alike; besides the medians of each way, the median over calls of the paired ratio
session / ref+io is reported, the statistic least disturbed by drift:

- ``reference``: ReferenceRunner with the input already on the device, outputs left there
  (what ``codl run`` times);
- ``reference_io``: the same plus the input copied from and the outputs copied back to
  the host (what a session call includes);
- ``session``: ``compile(graph, plan, (cpu, device))`` with rho 0 (cpu) or 1 (device).

Devices are ``cpu``, ``cuda`` or ``cuda@N`` (limited to N SMs); ``--native`` runs each
processor in its fastest type on the GPU machine (CPU bf16, GPU fp16, channels-last).

Usage::

    codl bench overhead --models yolov2,resnet50 --devices cpu,cuda,cuda@8 --native --json out.json
"""

from __future__ import annotations

import statistics
import sys
from typing import Callable

from .. import zoo
from ..frontends import from_torch
from ..ir.regions import Dim
from ..plan import Placement, Plan
from ..processors import Processor, ProcessorKind, typed_processor
from ..runtime import ReferenceRunner
from ..runtime.session import compile
from ..timing import LatencyStats, time_calls


def processors_for(device: str, native: bool) -> tuple[Processor, Processor]:
    """(CPU, device) for a device spec ``cpu``, ``cuda`` or ``cuda@N`` (N SMs), in fp32
    or, with ``native``, each in its fastest type (:func:`typed_processor`)."""
    name, _, sms = device.partition("@")
    cpu = typed_processor("cpu", native)
    return (cpu, cpu) if name == "cpu" else (cpu, typed_processor(name, native, sm_limit=int(sms) if sms else None))


def measure(name: str, device: str, iters: int, rounds: int, input_size: tuple[int, int] | None,
            width: float, native: bool = False) -> dict:
    module, x = zoo.build(name, input_size, width)
    graph = from_torch(module, x, name=name)
    cpu, proc = processors_for(device, native)
    runner = ReferenceRunner(graph, proc)
    x_dev = x.to(proc.device)
    rho = 0.0 if proc.kind is ProcessorKind.CPU else 1.0
    session = compile(graph, Plan.uniform(graph, Placement(Dim.OC, rho)), (cpu, proc))
    host_type = cpu.torch_dtype
    ways: dict[str, Callable[[], object]] = {
        "reference": lambda: runner(x_dev),
        # host input in, converted on the device; outputs converted there to the host's type, copied back
        "reference_io": lambda: [o.to(host_type).cpu() for o in runner(x)],
        "session": lambda: session(x),
    }
    samples: dict[str, list[float]] = {k: [] for k in ways}
    for fn in ways.values():
        time_calls(fn, proc, 2, 3, progress=False)
    for r in range(rounds):
        print(f"codl: {name} on {device}: round {r + 1}/{rounds}", file=sys.stderr, flush=True)
        for _ in range(iters):
            for key, fn in ways.items():
                samples[key] += time_calls(fn, proc, 1, 0, progress=False)
    session.close()
    stats = {k: LatencyStats.of(v).to_json() for k, v in samples.items()}
    med = {k: v["median_ms"] for k, v in stats.items()}
    paired = statistics.median(s / r for s, r in zip(samples["session"], samples["reference_io"]))
    return {"model": name, "device": device, "native_types": native, "ops": len(graph.nodes), "latency_ms": stats,
            "cuda_graph": session.gpu is not None and session.gpu.graph is not None,
            "session_over_reference": med["session"] / med["reference"],
            "session_over_reference_io": med["session"] / med["reference_io"],
            "paired_session_over_reference_io": paired}


HEADER = (f"{'model':<12} {'device':<7} {'reference':>10} {'ref+io':>10} {'session':>10} {'/ref':>7} {'/ref+io':>8} "
          f"{'paired':>7}  (median ms; paired: median of per-call session / ref+io)")


def format_row(r: dict) -> str:
    m = {k: v["median_ms"] for k, v in r["latency_ms"].items()}
    return (f"{r['model']:<12} {r['device']:<7} {m['reference']:>10.3f} {m['reference_io']:>10.3f} {m['session']:>10.3f} "
            f"{r['session_over_reference']:>7.3f} {r['session_over_reference_io']:>8.3f} "
            f"{r['paired_session_over_reference_io']:>7.3f}")
