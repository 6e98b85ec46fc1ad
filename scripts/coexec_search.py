"""Measured search for co-execution plans (the executor issue's check; the planners come
later). For each model, on the CPU (bf16 channels-last) with a GPU (fp16 channels-last,
optionally SM-limited), flags synchronisation:

1. every node's time on each processor alone, from traced single-processor sessions,
   and the ideal bound (sum over nodes of t_cpu * t_gpu / (t_cpu + t_gpu));
2. candidate plans from three families, each measured whole (median of timed calls):
   ``oc``: each conv or linear with the element-wise ops after it as one output-channel
   chain at the GPU share that balances its measured times, shifted towards the GPU by
   an offset; ``h``: every row-splittable node split by rows at one ratio; ``hchain``:
   the same in chains of a few nodes; small convs (under ``--min-us`` on the GPU) stay
   whole on the GPU;
3. the best plan refined by moving its shares, then timed against the GPU alone and the
   CPU alone, alternating call by call; its plan, trace and figures are saved.

Usage (GPU machine)::

    PYTHONPATH=src python3 scripts/coexec_search.py --models fst,vgg16,yolov2 --sm-limit 8 --out $OUT
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

from codl import zoo
from codl.frontends import from_torch
from codl.ir import Graph, OpKind
from codl.ir.regions import Dim
from codl.plan import Placement, Plan, split_dims
from codl.processors import Processor, typed_processor
from codl.runtime.session import compile

HEAVY = {OpKind.CONV, OpKind.CONV_TRANSPOSE, OpKind.LINEAR, OpKind.MATMUL}


def node_times(graph: Graph, x: torch.Tensor, procs: tuple[Processor, Processor], rho: float) -> dict[str, float]:
    """Per-node ms with every node on one processor (median of 5 traced calls)."""
    session = compile(graph, Plan.uniform(graph, Placement(Dim.OC, rho)), procs)
    for _ in range(3):
        session(x)
    runs: dict[str, list[float]] = {}
    track = session._tracks[int(rho)]
    for _ in range(5):
        session(x, trace=True)
        for e in session.last_trace.events:
            if e.kind == "run" and e.track == track:
                runs.setdefault(e.name, []).append(e.end_ms - e.start_ms)
    session.close()
    return {n: statistics.median(v) for n, v in runs.items()}


def timed(graph: Graph, plan: Plan, procs: tuple[Processor, Processor], x: torch.Tensor, calls: int) -> float:
    session = compile(graph, plan, procs)
    for _ in range(3):
        session(x)
    samples = []
    for _ in range(calls):
        t = time.perf_counter()
        session(x)
        samples.append((time.perf_counter() - t) * 1e3)
    session.close()
    return statistics.median(samples)


def units(graph: Graph, dim: Dim) -> list[list[str]]:
    """Each heavy node splittable on ``dim`` with the nodes after it that read its output
    and split on ``dim`` too (element-wise ops, norms, pads, pools), up to the next heavy node."""
    consumers = graph.consumers()
    out: list[list[str]] = []
    taken: set[str] = set()
    for node in graph.nodes:
        if node.op not in HEAVY or dim not in split_dims(graph, node.name) or node.name in taken:
            continue
        unit = [node.name]
        while True:
            users = consumers.get(graph.node(unit[-1]).outputs[0], [])
            if len(users) != 1 or users[0].op in HEAVY or dim not in split_dims(graph, users[0].name):
                break
            unit.append(users[0].name)
        taken.update(unit)
        out.append(unit)
    return out


def oc_plan(graph: Graph, tc: dict, tg: dict, offset: float, min_us: float) -> Plan:
    plan = Plan.uniform(graph, Placement(Dim.OC, 1.0))
    for unit in units(graph, Dim.OC):
        c, g = sum(tc.get(n, 0) for n in unit), sum(tg.get(n, 0) for n in unit)
        if g * 1e3 < min_us or c <= 0:
            continue
        rho = round(min(0.95, c / (c + g) + offset), 3)
        for n in unit:
            plan.placements[n] = Placement(Dim.OC, rho)
        if len(unit) > 1:
            plan.chains.append(unit)
    return plan


def h_plan(graph: Graph, tg: dict, rho: float, chain: int, min_us: float) -> Plan:
    plan = Plan.uniform(graph, Placement(Dim.OC, 1.0))
    run: list[str] = []
    consumers = graph.consumers()
    for node in graph.nodes:
        ok = Dim.H in split_dims(graph, node.name) and not (node.op in HEAVY and tg.get(node.name, 0) * 1e3 < min_us)
        if not ok:
            run = []
            continue
        plan.placements[node.name] = Placement(Dim.H, rho)
        if chain > 1:
            prev = graph.node(run[-1]) if run else None
            if prev is not None and len(consumers.get(prev.outputs[0], [])) == 1 and prev.outputs[0] in node.inputs:
                run.append(node.name)
            else:
                run = [node.name]
            if len(run) == chain:
                plan.chains.append(run)
                run = []
    return plan


def refine(graph: Graph, plan: Plan, step: float) -> list[Plan]:
    """The plan with every split share moved by +-step."""
    out = []
    for d in (-step, step):
        p = Plan(plan.graph, {k: Placement(v.dim, round(min(0.97, max(0.03, v.rho + d)), 3)) if v.is_split else v
                              for k, v in plan.placements.items()}, [list(c) for c in plan.chains])
        out.append(p)
    return out


def interleaved(graph: Graph, plans: dict[str, Plan], procs: dict[str, tuple], x: torch.Tensor, rounds: int) -> dict:
    sessions = {k: compile(graph, plans[k], procs[k]) for k in plans}
    for s in sessions.values():
        for _ in range(3):
            s(x)
    samples: dict[str, list[float]] = {k: [] for k in plans}
    for _ in range(rounds):
        for k, s in sessions.items():
            t = time.perf_counter()
            s(x)
            samples[k].append((time.perf_counter() - t) * 1e3)
    for s in sessions.values():
        s.close()
    return samples


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default="fst,vgg16,yolov2")
    ap.add_argument("--sm-limit", type=int, default=8)
    ap.add_argument("--calls", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=40)
    ap.add_argument("--min-us", type=float, default=100.0)
    ap.add_argument("--out", default=".")
    args = ap.parse_args()
    torch.set_grad_enabled(False)
    cpu = typed_processor("cpu", native=True)
    gpu = typed_processor("cuda", native=True, sm_limit=args.sm_limit)
    pair = (cpu, gpu)
    cpu_pair = (cpu, Processor.parse("cpu"))
    out = Path(args.out)
    summary = {}
    for name in args.models.split(","):
        module, x = zoo.build(name)
        graph = from_torch(module, x, name=name)
        tg = node_times(graph, x, pair, 1.0)
        tc = node_times(graph, x, cpu_pair, 0.0)
        ideal = sum(tc[n] * tg[n] / (tc[n] + tg[n]) for n in tg if n in tc and tc[n] + tg[n] > 0)
        gpu_alone = timed(graph, Plan.uniform(graph, Placement(Dim.OC, 1.0)), pair, x, args.calls)
        print(f"{name}: GPU alone {gpu_alone:.2f} ms, sum of nodes CPU {sum(tc.values()):.2f} GPU {sum(tg.values()):.2f}, "
              f"ideal {ideal:.2f} ms", flush=True)
        candidates = {}
        for off in (0.0, 0.05, 0.1, 0.15, 0.2):
            candidates[f"oc+{off}"] = oc_plan(graph, tc, tg, off, args.min_us)
        for rho in (0.6, 0.7, 0.8, 0.9):
            candidates[f"h{rho}"] = h_plan(graph, tg, rho, 1, args.min_us)
            candidates[f"hchain3-{rho}"] = h_plan(graph, tg, rho, 3, args.min_us)
        results = {}
        for key, plan in candidates.items():
            try:
                results[key] = timed(graph, plan, pair, x, args.calls)
            except Exception as e:  # noqa: BLE001 - a candidate that fails is reported and skipped
                print(f"  {key}: failed: {e}", flush=True)
                continue
            print(f"  {key:<14} {results[key]:8.2f} ms  ({gpu_alone / results[key]:.2f}x)", flush=True)
        best = min(results, key=results.get)
        plan, best_ms = candidates[best], results[best]
        for step in (0.05, 0.025):
            improved = True
            while improved:
                improved = False
                for p in refine(graph, plan, step):
                    ms = timed(graph, p, pair, x, args.calls)
                    if ms < best_ms * 0.99:
                        plan, best_ms, improved = p, ms, True
                        print(f"  refined ({step}): {ms:.2f} ms", flush=True)
        samples = interleaved(graph, {"gpu": Plan.uniform(graph, Placement(Dim.OC, 1.0)), "codl": plan,
                                      "cpu": Plan.uniform(graph, Placement(Dim.OC, 0.0))},
                              {"gpu": pair, "codl": pair, "cpu": cpu_pair}, x, args.rounds)
        med = {k: statistics.median(v) for k, v in samples.items()}
        ratios = sorted(g / c for g, c in zip(samples["gpu"], samples["codl"]))
        q = lambda f: ratios[int(f * (len(ratios) - 1))]  # noqa: E731
        best_single = min(med["gpu"], med["cpu"])
        session = compile(graph, plan, pair)
        for _ in range(3):
            session(x)
        session(x, trace=True)
        session.save_trace(out / f"{name}.trace.json")
        trace_summary = session.last_trace.summary()
        session.close()
        (out / f"{name}.plan.json").write_text(json.dumps(plan.to_json()))
        splits = {k: v for k, v in plan.placements.items() if v.is_split}
        summary[name] = {"family": best, "cpu_ms": med["cpu"], "gpu_ms": med["gpu"], "codl_ms": med["codl"],
                         "speedup_over_best_single": best_single / med["codl"],
                         "paired_gpu_over_codl_p25_p50_p75": [q(0.25), q(0.5), q(0.75)],
                         "ideal_ms": ideal, "ideal_speedup": best_single / ideal,
                         "split_nodes": len(splits), "chains": len(plan.chains),
                         "dims": sorted({v.dim.value for v in splits.values()}),
                         "rhos": sorted({v.rho for v in splits.values()}), "candidates_ms": results,
                         "trace_summary": trace_summary}
        print(f"{name}: best {best} -> CPU {med['cpu']:.2f} ms, GPU {med['gpu']:.2f}, codl {med['codl']:.2f} "
              f"({best_single / med['codl']:.2f}x over the best single processor; paired GPU/codl p25-p75 "
              f"{q(0.25):.2f}-{q(0.75):.2f}); ideal {ideal:.2f} ({best_single / ideal:.2f}x)", flush=True)
        print("  trace:", json.dumps(trace_summary), flush=True)
    (out / "search.json").write_text(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
