"""``codl bench MODEL``: does co-execution help this model on this machine, by how much,
and why. Every strategy's plan is made (from the cached model profile, measured first
when absent), compiled into a session, and timed with the others call by call,
interleaved, so a drift of the machine reaches them all alike. Each row gives measured
latency statistics, the speedup over the best single processor with its spread (the
10th-90th percentile of the per-round ratios), the planner's predicted latency and its
error, and the placement.

The ideal bound is the sum over nodes of ``t0 * t1 / (t0 + t1)`` (each node split at the
ratio that balances its measured whole times, with free sharing).
"""

from __future__ import annotations

import dataclasses
import math
import statistics
import sys
from typing import Any

import numpy as np
import torch

from ..ir.graph import DType, Graph
from ..ir.regions import Dim
from ..plan import Placement, Plan, PlanResult, Prediction, plan_graph
from ..plan.cost import CostModel
from ..plan.simulate import format_summary, placement_summary
from ..processors import Processor, ProcessorKind
from ..profile.model import load_or_profile
from ..runtime.session import compile, pair_defaults
from ..timing import LatencyStats, time_interleaved
from .energy import peak_host_mb
from .report import op_rows

BENCH_SCHEMA_VERSION = 1
SINGLES = ("cpu", "gpu")
WHOLE_CPU = "whole-cpu"  # with two CPU groups: every core in one group, not predicted
# The GPU alone on the other kernel sources (codl's own where the pair uses the libraries,
# the libraries where it uses own, both where it picks the faster per shape), not
# predicted: the best single processor is the fastest of them, so a plan is never credited
# with what a kernel choice alone would give.
GPU_LIBRARY, GPU_OWN = "gpu-library", "gpu-own"


def ideal_ms(graph: Graph, cost: CostModel) -> float:
    total = 0.0
    for node in graph.nodes:
        t0, t1 = cost.node(node.name).whole
        total += t0 * t1 / (t0 + t1) if t0 + t1 > 0 else 0.0
    return total


def fp32(processors: tuple[Processor, Processor]) -> tuple[Processor, Processor]:
    return tuple(dataclasses.replace(p, dtype=DType.FLOAT32) for p in processors)  # type: ignore[return-value]


def bench_model(graph: Graph, processors: tuple[Processor, Processor], inputs: list[torch.Tensor],
                strategies: list[str], iters: int = 50, warmup: int = 5, progress: bool = True,
                measure_guard: bool = True, seconds: float | None = None, traced: str | None = None,
                measure_power: bool = True, budget_s: float | None = None, refresh: bool = False) -> dict[str, Any]:
    """Plans, sessions and interleaved timings of ``strategies`` (the two single
    processors always included); returns the results the CLI prints. ``traced``: the
    strategy whose plan is traced once for the report (when its plan ends on one
    processor, the fastest plan that uses both instead). With
    ``measure_guard`` a plan measured slower than the faster processor alone (while
    planning) is replaced by it. With ``seconds``, rounds go on until that much time has
    passed (at least 3) instead of ``iters``."""
    processors = pair_defaults(processors)
    say = (lambda text: print(f"codl: {text}", file=sys.stderr, flush=True)) if progress else (lambda text: None)
    names = list(dict.fromkeys([*SINGLES, *strategies]))
    cost = load_or_profile(graph, processors, progress=progress, inputs=inputs, budget_s=budget_s, refresh=refresh)
    results: dict[str, PlanResult] = {}
    pairs: dict[str, tuple[Processor, Processor]] = {}
    plan_ms: dict[str, float] = {}
    for s in names:
        pair = processors
        c = cost
        if s == "mulayer" and any(p.dtype is not DType.FLOAT32 for p in processors):
            pair = fp32(processors)  # the uLayer-like baseline computes in fp32 on both sides
            c = load_or_profile(graph, pair, progress=progress, inputs=inputs, budget_s=budget_s, refresh=refresh)
        say(f"planning {s}")
        results[s] = plan_graph(graph, pair, s, cost=c, inputs=inputs, progress=progress, measure=measure_guard)
        plan_ms[s] = results[s].extra["planning_ms"]
        pairs[s] = pair
    singles = list(SINGLES)
    if all(p.kind is ProcessorKind.CPU for p in processors):
        # two CPU groups: the baseline a user has is the whole CPU, not one group
        p0, p1 = processors
        threads = (p0.threads or torch.get_num_threads()) + (p1.threads or torch.get_num_threads())
        whole = (dataclasses.replace(p0, threads=threads, cores=None), p1)
        plan = Plan.uniform(graph, Placement(Dim.OC, 0.0))
        results[WHOLE_CPU] = PlanResult(plan, WHOLE_CPU, Prediction(math.nan, (math.nan, 0.0), (math.nan, 0.0), 0, 0),
                                        (math.nan, math.nan))
        pairs[WHOLE_CPU], plan_ms[WHOLE_CPU] = whole, 0.0
        names.insert(2, WHOLE_CPU)
        singles.append(WHOLE_CPU)
    for name, other in other_gpus(processors[1]).items():
        results[name] = PlanResult(Plan.uniform(graph, Placement(Dim.OC, 1.0)), name,
                                   Prediction(math.nan, (math.nan, 0.0), (math.nan, 0.0), 0, 0), (math.nan, math.nan))
        pairs[name], plan_ms[name] = (processors[0], other), 0.0
        names.insert(len(singles), name)
        singles.append(name)
    # A strategy whose plan is one already timed (a guard's fallback to a processor alone,
    # two planners agreeing) shares its session and samples: the same plan timed twice
    # would differ only by noise.
    same_as: dict[str, str] = {}
    for s in names:
        same_as[s] = next((t for t in names[:names.index(s)] if same_as[t] == t
                           and plan_key(results[t].plan, pairs[t]) == plan_key(results[s].plan, pairs[s])), s)
    timed = [s for s in names if same_as[s] == s]
    sessions = {s: compile(graph, results[s].plan, pairs[s]) for s in timed}
    try:
        with torch.inference_mode():
            for s in timed:
                for _ in range(warmup):
                    sessions[s](*inputs)
            say(f"timing {iters} rounds of {len(timed)} plans, interleaved")
            samples = time_interleaved({s: (lambda s=s: sessions[s](*inputs)) for s in timed}, iters, seconds)
            energy = {}
            if measure_power:
                from .energy import Nvml, Rapl, measure_energy

                gpu = processors[1].kind is ProcessorKind.CUDA
                rapl, nvml = Rapl(), (Nvml(processors[1].index) if gpu else None)
                if gpu or rapl.why is None:
                    say("energy and memory per inference")
                for s in timed:  # without a GPU or RAPL there is nothing to read: no extra calls
                    energy[s] = (measure_energy(lambda s=s: sessions[s](*inputs), gpu=gpu,
                                                gpu_index=processors[1].index, rapl=rapl, nvml=nvml)
                                 if gpu or rapl.why is None else
                                 {"cpu_mj_per_call": None, "cpu_energy_unavailable": rapl.why, "gpu_mj_per_call": None,
                                  "gpu_energy_unavailable": "no GPU in this pair", "gpu_peak_mb": None})
            trace = None
            both = [s for s in timed if uses_both(results[s].plan)]
            if traced in same_as and not uses_both(results[traced].plan) and both:
                # the requested plan ended on one processor: trace the fastest that uses both
                traced = min(both, key=lambda s: statistics.median(samples[s]))
            if traced in same_as:  # one traced call of that plan, for the report
                sessions[same_as[traced]](*inputs, trace=True)
                trace = sessions[same_as[traced]].last_trace
    finally:
        for session in sessions.values():
            session.close()
    for s in names:
        samples[s] = samples[same_as[s]]
        if same_as[s] in energy:
            energy[s] = energy[same_as[s]]
    med = {s: statistics.median(samples[s]) for s in names}
    best_single = min(singles, key=lambda s: med[s])
    rows = []
    for s in names:
        ratios = np.array(samples[best_single]) / np.array(samples[s])
        stats = LatencyStats.of(samples[s])
        r = results[s]
        twin = f"the same plan as {same_as[s]}: timed once" if same_as[s] != s else ""
        note = "; ".join(x for x in (r.note, twin) if x)
        rows.append({"strategy": s, "latency_ms": stats.to_json(), "p99_ms": float(np.percentile(samples[s], 99)),
                     "speedup": med[best_single] / med[s],
                     "speedup_p10_p90": [float(np.percentile(ratios, 10)), float(np.percentile(ratios, 90))],
                     "predicted_ms": _or_none(r.predicted.total_ms),
                     "prediction_error": _or_none(r.predicted.total_ms / med[s] - 1),
                     "cost_source": r.plan.meta.get("cost_source"), "note": note, "planning_ms": plan_ms[s],
                     "placement": placement_summary(graph, r.plan, cost.itemsize),
                     "processors": [p.describe() for p in pairs[s]], "samples_ms": samples[s],
                     "plan": r.plan.to_json(), **({"energy": energy[s]} if s in energy else {})})
    ideal = ideal_ms(graph, cost)
    return {"schema_version": BENCH_SCHEMA_VERSION, "model": graph.name,
            "processors": [p.describe() for p in processors], "iters": len(samples[names[0]]),
            "warmup": warmup, "best_single": best_single, "best_single_ms": med[best_single],
            "ideal_ms": ideal, "ideal_speedup": med[best_single] / ideal if ideal > 0 else None,
            "ideal_source": cost.source, "rows": rows, "peak_host_mb": peak_host_mb(),
            "warnings": warnings(rows, samples, len(samples[names[0]])),
            **({"kernel_choices": kernel_choices()} if processors[1].fastest_kernels else {}),
            **({"traced": traced, "op_rows": op_rows(graph, results[traced].plan, cost, trace), "_trace": trace}
               if trace is not None else {})}


def other_gpus(gpu: Processor) -> dict[str, Processor]:
    """``gpu`` on the other kernel sources, by row name: own where it uses the libraries,
    the libraries where it uses own, both where it picks the faster per shape; none where
    codl has no own kernels for it (not CUDA, no Triton, or a type other than fp16/bf16,
    which the own kernels leave to the libraries)."""
    if gpu.kind is not ProcessorKind.CUDA or gpu.dtype not in (DType.FLOAT16, DType.BFLOAT16):
        return {}
    from ..ops.own_kernels import available

    if available() is not None:
        return {}
    library = dataclasses.replace(gpu, own_kernels=False, fastest_kernels=False)
    own = dataclasses.replace(gpu, own_kernels=True, fastest_kernels=False)
    if gpu.fastest_kernels:
        return {GPU_LIBRARY: library, GPU_OWN: own}
    return {GPU_LIBRARY: library} if gpu.own_kernels else {GPU_OWN: own}


def kernel_choices() -> dict[str, int]:
    """How many conv and linear shapes this process timed for ``--fastest-kernels``, and
    how many of them run on codl's own kernels."""
    from ..ops.fastest import choices

    made = choices().values()
    return {"shapes": len(made), "own": sum(c.own for c in made)}


def uses_both(plan: Plan) -> bool:
    """Whether ``plan`` gives work to both processors."""
    where = {p.processor for p in plan.placements.values()}
    return None in where or where == {0, 1}


def plan_key(plan: Plan, pair: tuple[Processor, Processor]) -> tuple:
    """What makes two plans run alike: each node's processor (whole) or cut, the chains,
    and the processors with their settings."""
    cuts = tuple(sorted((k, p.dim.value, p.rho) if p.is_split else (k, "whole", p.processor)
                        for k, p in plan.placements.items()))
    return cuts, tuple(tuple(c) for c in plan.chains), tuple(repr(p) for p in pair)


def warnings(rows: list[dict], samples: dict[str, list[float]], rounds: int) -> list[str]:
    """Where the figures are not to be trusted."""
    out = []
    if rounds < 10:
        out.append(f"only {rounds} rounds: medians and spreads are rough (use -n 20 or more)")
    for r in rows:
        lat = samples[r["strategy"]]
        p10, p90 = np.percentile(lat, 10), np.percentile(lat, 90)
        if (p90 - p10) > 0.1 * r["latency_ms"]["median_ms"]:
            out.append(f"{r['strategy']}: latency spread (p10-p90) is {100 * (p90 - p10) / r['latency_ms']['median_ms']:.0f}% "
                       f"of its median")
    cpu = samples.get("cpu", [])
    if len(cpu) >= 6:
        half = len(cpu) // 2
        a, b = statistics.median(cpu[:half]), statistics.median(cpu[half:])
        if abs(a - b) > 0.1 * min(a, b):
            out.append(f"the CPU's speed drifted: the CPU alone took {a:.3f} ms in the first half of the rounds and "
                       f"{b:.3f} ms in the second")
    gov = governor()
    if gov not in (None, "performance"):
        out.append(f"CPU frequency governor is {gov!r}, not 'performance': clocks may change under load")
    return out


def governor() -> str | None:
    try:
        with open("/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor", encoding="utf-8") as f:
            return f.read().strip()
    except OSError:
        return None


def format_results(res: dict[str, Any]) -> str:
    lines = [f"{'strategy':<13} {'median':>8} {'mean':>8} {'min':>8} {'p90':>8} {'p99':>8}  {'speedup':>7} "
             f"{'(p10-p90)':>11}  {'predicted':>9} {'error':>6}"]
    for r in res["rows"]:
        lat = r["latency_ms"]
        lo, hi = r["speedup_p10_p90"]
        pred = (f"{r['predicted_ms']:9.3f} {100 * r['prediction_error']:+5.0f}%" if r["predicted_ms"] is not None
                else f"{'-':>9} {'-':>6}")
        lines.append(f"{label(r['strategy'], res):<13} {lat['median_ms']:8.3f} {lat['mean_ms']:8.3f} {lat['min_ms']:8.3f} "
                     f"{lat['p90_ms']:8.3f} {r['p99_ms']:8.3f}  {r['speedup']:6.2f}x ({lo:4.2f}-{hi:4.2f})  {pred}")
        lines.append(f"{'':<13} {format_summary(r['placement'], pair_names(r['processors']))}")
        if r["note"]:
            lines.append(f"{'':<13} note: {r['note']}")
        e = r.get("energy")
        if e:
            parts = [f"CPU {e['cpu_mj_per_call']:.1f} mJ" if e["cpu_mj_per_call"] is not None else None,
                     f"GPU {e['gpu_mj_per_call']:.1f} mJ" if e["gpu_mj_per_call"] is not None else None,
                     f"GPU peak {e['gpu_peak_mb']:.0f} MB" if e.get("gpu_peak_mb") is not None else None]
            parts = [p for p in parts if p]
            if parts:
                lines.append(f"{'':<13} per inference: {', '.join(parts)}")
    lines.append("latencies in ms, measured (host input, outputs on the host); predicted from the "
                 f"{res['rows'][0]['cost_source']}")
    ideal = res["ideal_speedup"]
    lines.append(f"ideal bound  {res['ideal_ms']:.3f} ms ({ideal:.2f}x over {label(res['best_single'], res)} alone; every node "
                 f"split at its balancing ratio, sharing free)")
    both = [r for r in res["rows"] if _uses_both(r["placement"])]
    best = max(both, key=lambda r: r["speedup"]) if both else None
    if res["iters"] < 10:
        verdict = (f"not judged: {res['iters']} rounds are too few to tell a gain from noise (use -n 20 or more); "
                   f"fastest alone: {label(res['best_single'], res)} ({res['best_single_ms']:.3f} ms)")
    elif best is None or best["speedup_p10_p90"][0] <= 1.0:
        why = ("no strategy found a plan that uses both processors and beats it" if best is None else
               f"the best plan that uses both ({best['strategy']}, {best['speedup']:.2f}x, p10-p90 "
               f"{best['speedup_p10_p90'][0]:.2f}-{best['speedup_p10_p90'][1]:.2f}) is not reliably faster")
        verdict = (f"co-execution does not help here: run on {label(res['best_single'], res)} alone "
                   f"({res['best_single_ms']:.3f} ms); {why}")
    else:
        gain = (best["speedup"] - 1) / (ideal - 1) * 100 if ideal and ideal > 1 else 0.0
        verdict = (f"co-execution helps: {best['strategy']} runs {best['speedup']:.2f}x faster than "
                   f"{label(res['best_single'], res)} alone ({best['latency_ms']['median_ms']:.3f} vs "
                   f"{res['best_single_ms']:.3f} ms), "
                   f"{gain:.0f}% of the ideal gain")
    lines.append(f"verdict      {verdict}")
    if res["best_single"] in (GPU_LIBRARY, GPU_OWN) and res["processors"][1].get("kernels") != "fastest":
        lines.append(f"hint         the GPU alone ran fastest on {res['best_single'].split('-')[1]} kernels, which "
                     "the plans do not use: with --fastest-kernels every plan runs each GPU conv and linear shape "
                     "on the faster source")
    e = next((r["energy"] for r in res["rows"] if r.get("energy")), None)
    if e:
        missing = [f"{k.split('_')[0].upper()} energy unavailable: {e[k]}" for k in ("cpu_energy_unavailable",
                                                                                  "gpu_energy_unavailable") if k in e]
        for m in missing:
            lines.append(f"energy       {m}")
    kc = res.get("kernel_choices")
    if kc:
        lines.append(f"kernels      --fastest-kernels: {kc['own']} of {kc['shapes']} GPU conv and linear shapes timed faster "
                     f"on codl's kernels, the rest on the libraries'")
    lines.append(f"memory       peak host resident set {res.get('peak_host_mb', 0):.0f} MB (the whole run)")
    for w in res.get("warnings", []):
        lines.append(f"warning      {w}")
    return "\n".join(lines)


def label(strategy: str, res: dict[str, Any]) -> str:
    """A row's display name: with two CPU groups the single-processor rows are cpu#0 and
    cpu#1 (the strategies "cpu" and "gpu" mean processor 0 and processor 1 alone)."""
    if strategy in SINGLES and all(p["device"] == "cpu" for p in res["processors"]):
        return f"cpu#{SINGLES.index(strategy)}"
    return strategy


def _or_none(x: float) -> float | None:
    return None if math.isnan(x) else x


def _uses_both(placement: dict) -> bool:
    return bool(placement["split_by_dim"]) or (placement["whole_on_0"] > 0 and placement["whole_on_1"] > 0)


def _name(p: dict) -> str:
    extra = f", {p['threads']} threads" if "threads" in p else ""
    extra += f", {p['sm_limit']} SMs" if p.get("sm_limit") else ""
    extra += {"codl": ", own kernels", "fastest": ", fastest kernels"}.get(p.get("kernels") or "", "")
    return f"{p['device']} ({p['dtype']}{extra})"


def pair_names(described: list[dict]) -> tuple[str, str]:
    """Display names of a pair; two CPU groups are told apart as cpu#0 and cpu#1."""
    same = described[0]["device"] == described[1]["device"]
    return tuple(_name({**p, "device": f"{p['device']}#{i}" if same else p["device"]})  # type: ignore[return-value]
                 for i, p in enumerate(described))


ROW_KEYS = {"strategy": str, "latency_ms": dict, "speedup": float, "speedup_p10_p90": list, "placement": dict,
            "processors": list, "samples_ms": list, "plan": dict}


def load_results(data: dict[str, Any]) -> dict[str, Any]:
    """Check a bench results JSON against its schema (version, fields, types) and return it;
    one-line errors name the field."""
    from ..errors import CodlError
    from ..fingerprint import check_artifact

    check_artifact(data, "bench", BENCH_SCHEMA_VERSION, "bench result file", CodlError)
    for key, kind in {"model": str, "processors": list, "rows": list, "best_single": str, "best_single_ms": float,
                      "ideal_ms": float, "warnings": list}.items():
        if not isinstance(data.get(key), kind):
            raise CodlError(f"bench results: field {key!r} should be {kind.__name__}, got {data.get(key)!r:.60}")
    for i, row in enumerate(data["rows"]):
        for key, kind in ROW_KEYS.items():
            if not isinstance(row.get(key), kind):
                raise CodlError(f"bench results: rows[{i}].{key} should be {kind.__name__}")
        if row.get("predicted_ms") is not None and not isinstance(row["predicted_ms"], float):
            raise CodlError(f"bench results: rows[{i}].predicted_ms should be a number or null")
    return data
