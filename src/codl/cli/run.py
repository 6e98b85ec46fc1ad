"""``codl models | inspect | run | check | trace | plan``: a model, a plan and their runs."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

from .. import zoo
from ..errors import CodlError
from ..fingerprint import artifact_header
from ..ir import Graph, op_rows, total_flops
from ..processors import Processor
from .common import (
    budget_of,
    check_out_dir,
    load_model,
    log,
    pair_of,
    plan_and_model,
    processor_of,
    read_plan,
    write_json,
)


def cmd_models(args: argparse.Namespace) -> int:
    rows = []
    for name, spec in zoo.MODELS.items():
        ops, params, flops = spec.figures
        rows.append({"model": name, "input": f"{spec.input_size[0]}x{spec.input_size[1]}", "ops": ops,
                     "params_m": params / 1e6, "gflops": flops / 1e9,
                     "codl_paper": spec.paper, "description": spec.description})
    print(f"{'model':<12} {'input':>8} {'ops':>5} {'params(M)':>10} {'GFLOPs':>8}  description")
    for r in rows:
        mark = " [CoDL eval]" if r["codl_paper"] else ""
        print(f"{r['model']:<12} {r['input']:>8} {r['ops']:>5} {r['params_m']:>10.2f} {r['gflops']:>8.2f}  "
              f"{r['description']}{mark}")
    print("GFLOPs count a multiply-add as 2 FLOPs.")
    write_json(args.json, {**artifact_header("models"), "models": rows})
    return 0


def cmd_inspect(args: argparse.Namespace) -> int:
    graph, _, _, label = load_model(args)
    rows = op_rows(graph)
    print(f"{label}: {len(rows)} ops, {graph.num_parameters / 1e6:.2f} M parameters, "
          f"{total_flops(graph) / 1e9:.3f} GFLOPs")
    w = max([len(r.name) for r in rows] + [4])
    print(f"{'#':>4} {'node':<{w}} {'op':<18} {'inputs':<40} {'output':<28} {'MFLOPs':>9} {'params':>9}")
    for i, r in enumerate(rows):
        print(f"{i:>4} {r.name:<{w}} {r.op:<18} {', '.join(r.inputs):<40} {', '.join(r.outputs):<28} "
              f"{r.flops / 1e6:>9.2f} {r.params:>9}")
    write_json(args.json, {**artifact_header("inspect"), "graph": graph.to_json(),
                           "ops": [r.__dict__ for r in rows]})
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from ..bench.run import run_single

    if args.iters < 1 or args.warmup < 0:
        raise CodlError(f"-n must be >= 1 and --warmup >= 0 (got -n {args.iters}, --warmup {args.warmup})")
    check_out_dir(args.json, "--json")
    if args.threads is not None and args.threads > (os.cpu_count() or 1):
        log(f"warning: --threads {args.threads} is more than the {os.cpu_count()} cores here; "
            f"threads will share cores and timings suffer")
    if args.plan:
        return _run_plan(args)
    proc = processor_of(args)
    graph, module, inputs, label = load_model(args)
    log(f"preparing {len(graph.nodes)} ops on {proc.label}")
    timed = run_single(graph, proc, inputs, args.iters, args.warmup, args.check, module, None if module else args.model)
    samples, stats, check = timed.samples_ms, timed.stats, timed.check
    desc = proc.describe()
    print(f"model      {label}: {len(graph.nodes)} ops, {total_flops(graph) / 1e9:.2f} GFLOPs")
    extra = f", {desc['threads']} threads" if "threads" in desc else f", {desc.get('name', '')}"
    if desc.get("sm_limit"):
        extra += f", limited to {desc['sm_limit']} of {desc['sms']} SMs"
    print(f"processor  {proc.label}{extra}, {proc.dtype.value} {'channels-last' if proc.channels_last else 'NCHW'}")
    if check is not None:
        print(f"check      {check['against']}: relative error {check['rel_l2_error']:.1e} "
              f"(tolerance {check['tolerance']:.0e}) {'OK' if check['ok'] else 'FAILED'}; "
              f"worst element {check['max_abs_rel_error']:.1e} of max |ref|")
    print(f"latency    measured, {stats.count} runs after {args.warmup} warm-up (ms)")
    for key in ("median", "mean", "min", "max", "p90"):
        print(f"  {key:<8} {getattr(stats, key + '_ms'):10.3f}")
    write_json(args.json, {**artifact_header("run"), "model": label, "ops": len(graph.nodes),
                           "gflops": total_flops(graph) / 1e9, "processor": desc, "iters": args.iters,
                           "warmup": args.warmup, "latency_source": "measured", "latency_ms": stats.to_json(),
                           "samples_ms": samples, "check": check})
    return 0 if check is None or check["ok"] else 1


def _run_plan(args: argparse.Namespace) -> int:
    """``codl run MODEL --plan plan.json``: the plan on the processors it was made for."""
    from ..bench.run import run_plan

    plan, pair, graph, module, inputs, label = plan_and_model(args)
    log(f"compiling the plan for {pair[0].label} + {pair[1].label}")
    timed = run_plan(graph, plan, pair, inputs, args.iters, args.warmup, args.check, module,
                     None if module else args.model)
    samples, stats, check = timed.samples_ms, timed.stats, timed.check
    predicted = plan.meta.get("predicted_ms")
    print(f"model      {label}: {len(graph.nodes)} ops, {total_flops(graph) / 1e9:.2f} GFLOPs")
    print(f"plan       {args.plan}: strategy {plan.meta.get('strategy', '?')}, "
          f"{sum(p.is_split for p in plan.placements.values())} split ops, {len(plan.chains)} chains")
    print(f"processors {pair[0].label} ({pair[0].dtype.value}) + {pair[1].label} ({pair[1].dtype.value})")
    if check is not None:
        print(f"check      {check['against']}: relative error {check['rel_l2_error']:.1e} "
              f"(tolerance {check['tolerance']:.0e}) {'OK' if check['ok'] else 'FAILED'}")
    print(f"latency    measured, {stats.count} runs after {args.warmup} warm-up (ms; host input, outputs on the host)")
    for key in ("median", "mean", "min", "max", "p90"):
        print(f"  {key:<8} {getattr(stats, key + '_ms'):10.3f}")
    if predicted is not None:
        print(f"predicted  {predicted:.3f} ms ({plan.meta.get('cost_source', '?')}); "
              f"measured/predicted {stats.median_ms / predicted:.2f}")
    write_json(args.json, {**artifact_header("run"), "model": label, "plan": args.plan, "plan_meta": plan.meta,
                           "iters": args.iters, "warmup": args.warmup, "latency_source": "measured",
                           "latency_ms": stats.to_json(), "samples_ms": samples, "check": check})
    return 0 if check is None or check["ok"] else 1


def cmd_check(args: argparse.Namespace) -> int:
    """``codl check MODEL --plan plan.json``: co-executed outputs element by element
    against the reference."""
    from ..bench.run import check_plan

    plan, pair, graph, module, inputs, label = plan_and_model(args)
    res = check_plan(graph, plan, pair, inputs, module, None if module is not None else args.model, args.rtol, args.atol)
    against, rtol, atol, w = res.pop("against"), res["rtol"], res["atol"], res["worst"]
    print(f"model      {label}; plan {args.plan} on {pair[0].label} ({pair[0].dtype.value}) + "
          f"{pair[1].label} ({pair[1].dtype.value})")
    print(f"reference  {against}")
    print(f"check      {'OK' if res['ok'] else 'FAILED'}: {res['failing']} of {res['elements']} elements outside "
          f"atol {atol:.3g} + rtol {rtol:.3g} x |reference|")
    print(f"worst      output {w['output']} at {w['index']}: {w['value']:.6g} against {w['reference']:.6g} "
          f"(|error| {w['abs_error']:.3g})")
    print(f"passes at  rtol >= {res['smallest_rtol']:.3g} (with atol {atol:.3g}) or atol >= {res['smallest_atol']:.3g} "
          f"(with rtol {rtol:.3g})")
    write_json(args.json, {**artifact_header("check"), "model": label, "plan": args.plan, "against": against, **res})
    return 0 if res["ok"] else 1


def cmd_trace(args: argparse.Namespace) -> int:
    from ..bench.run import trace_plan
    from ..runtime.session import pair_defaults

    plan = read_plan(args.plan)
    pair = pair_defaults(pair_of(args))
    graph, _, inputs, label = load_model(args)
    log(f"compiling the plan for {pair[0].label} + {pair[1].label}")
    trace = trace_plan(graph, plan, pair, inputs, args.warmup, args.out)
    print(f"model      {label}: {len(graph.nodes)} ops; call {trace.total_ms:.2f} ms (measured, traced)")
    print(f"{'track':<52} {'busy ms':>8} {'copying':>8} {'waiting':>8} {'span':>8}")
    for track, row in trace.summary().items():
        print(f"{track:<52} {row['busy_ms']:>8.2f} {row['copying_ms']:>8.2f} {row['waiting_ms']:>8.2f} {row['span_ms']:>8.2f}")
    _predicted_vs_traced(graph, plan, pair, trace)
    print(f"trace      {args.out} (open in ui.perfetto.dev or chrome://tracing)")
    return 0


def _predicted_vs_traced(graph: Graph, plan: Any, pair: tuple[Processor, Processor], trace: Any) -> None:
    """Where a cached model profile of these processors exists: each processor's op time
    predicted against traced, and the ops predicted worst."""
    from ..bench.report import predicted_vs_traced

    got = predicted_vs_traced(graph, plan, pair, trace)
    if got is None:
        return
    pred, traced = got.predicted, got.traced_busy_ms
    print(f"predicted  call {pred.total_ms:.2f} ms; ops on processor 0 {pred.busy_ms[0]:.2f} ms "
          f"(traced {traced[0]:.2f}), processor 1 {pred.busy_ms[1]:.2f} ms "
          f"(traced {traced[1]:.2f}); from {got.profile.name}")
    for diff, n, q, p_ms, t_ms in got.worst:
        print(f"  {n:<40} processor {q}: predicted {p_ms:7.3f} ms, traced {t_ms:7.3f} ms ({diff:+.3f})")


def cmd_plan(args: argparse.Namespace) -> int:
    from ..atomic import write_atomic
    from ..bench.model import pair_names
    from ..plan import plan_graph
    from ..plan.simulate import format_summary, placement_summary

    check_out_dir(args.out, "-o")
    pair = pair_of(args)
    graph, _, inputs, label = load_model(args)
    log(f"planning {label} on {pair[0].label} + {pair[1].label}, strategy {args.strategy}")
    if args.predictors and args.costs != "predictors":
        raise CodlError("--predictors applies to --costs predictors")
    result = plan_graph(graph, pair, args.strategy, inputs=inputs, measure=args.measure, budget_s=budget_of(args),
                        refresh=args.refresh_profile, costs=args.costs, predictors=args.predictors)
    plan = result.plan
    names = pair_names(plan.meta["processors"])
    summary = placement_summary(graph, plan)
    print(f"model      {label}")
    print(f"processors {names[0]} + {names[1]}")
    print(f"strategy   {args.strategy}; costs {plan.meta['cost_source']}; planned in {plan.meta['planning_ms']:.0f} ms")
    print(f"placement  {format_summary(summary, names)}")
    print(f"predicted  plan {result.predicted.total_ms:.3f} ms; {names[0]} alone {result.single_ms[0]:.3f} ms, "
          f"{names[1]} alone {result.single_ms[1]:.3f} ms")
    if "measured_ms" in result.extra:
        print("measured   " + ", ".join(f"{k} {v:.3f} ms" for k, v in result.extra["measured_ms"].items()))
    if result.note:
        print(f"guard      {result.note}")
    out = Path(args.out)
    write_atomic(out, json.dumps({**plan.to_json(), "summary": summary}, indent=1))
    print(f"plan       {out} (run it: codl run {args.model} --plan {out})")
    return 0
