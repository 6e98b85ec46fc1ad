"""Command-line interface: thin subcommands over the public API.

    codl models
    codl inspect MODEL [--input-size H W] [--width W] [--json FILE]
    codl run MODEL -d cpu|cuda [--threads N] [-n ITERS] [--warmup N] [--json FILE]

MODEL is a built-in model name (``codl models``) or a path to an ``.onnx`` file. Results
go to stdout, progress and errors to stderr; errors exit with status 2.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections import Counter
from pathlib import Path
from typing import Any, Sequence

import torch

from . import zoo
from .errors import CodlError
from .fingerprint import artifact_header
from .frontends import load_onnx
from .ir import DType, Graph, op_rows, total_flops
from .processors import Processor
from .runtime import random_inputs

DTYPES = {"fp32": DType.FLOAT32, "fp16": DType.FLOAT16, "bf16": DType.BFLOAT16}


def _log(text: str) -> None:
    print(f"codl: {text}", file=sys.stderr, flush=True)


def _input_shapes(items: Sequence[str] | None) -> dict[str, list[int]]:
    shapes = {}
    for item in items or []:
        name, _, dims = item.partition("=")
        try:
            shapes[name] = [int(d) for d in dims.lower().split("x")]
        except ValueError:
            raise CodlError(f"--input-shape {item!r}: expected NAME=1x3x224x224") from None
    return shapes


def load_model(args: argparse.Namespace) -> tuple[Graph, torch.nn.Module | None, list[torch.Tensor], str]:
    """Graph, the source module (built-in models only), example inputs, description."""
    model = args.model
    if model.endswith(".onnx") or os.path.sep in model or os.path.exists(model):
        if getattr(args, "input_size", None) or getattr(args, "width", 1.0) != 1.0:
            raise CodlError("--input-size and --width apply to built-in models; for an ONNX file give "
                            "--input-shape NAME=1x3xHxW for inputs with symbolic dimensions")
        _log(f"importing {model}")
        graph = load_onnx(model, _input_shapes(args.input_shape))
        return graph, None, random_inputs(graph), model
    if getattr(args, "input_shape", None):
        raise CodlError("--input-shape applies to ONNX files; for a built-in model give --input-size H W")
    spec = zoo.spec(model)
    hw = tuple(args.input_size) if args.input_size else spec.input_size
    _log(f"building {model} at {hw[0]}x{hw[1]}, width {args.width} (seeded random weights)")
    module, x = zoo.build(model, hw, args.width)
    from .frontends import from_torch

    graph = from_torch(module, x, name=model)
    return graph, module, [x], f"{model} ({hw[0]}x{hw[1]}, width {args.width})"


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
    _write_json(args.json, {**artifact_header("models"), "models": rows})
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
    _write_json(args.json, {**artifact_header("inspect"), "graph": graph.to_json(),
                            "ops": [r.__dict__ for r in rows]})
    return 0


def _read_plan(path: str):
    from .plan import Plan, PlanError

    try:
        return Plan.from_json(json.loads(Path(path).read_text()))
    except (OSError, ValueError) as e:
        raise CodlError(f"cannot read plan {path}: {e}") from None
    except PlanError as e:
        raise CodlError(f"{path}: {e}") from None


def _plan_and_model(args: argparse.Namespace) -> tuple:
    """The plan file, the processors it names, and the model it is for."""
    plan = _read_plan(args.plan)
    described = plan.meta.get("processors")
    if not described or len(described) != 2:
        raise CodlError(f"{args.plan} does not name its two processors (make it with codl plan); "
                        f"hand-made plans run with codl trace MODEL --plan FILE -d cpu,cuda")
    pair = (Processor.from_description(described[0]), Processor.from_description(described[1]))
    graph, module, inputs, label = load_model(args)
    if plan.graph != graph.name:
        raise CodlError(f"{args.plan} is a plan for {plan.graph!r}, not {graph.name!r}")
    return plan, pair, graph, module, inputs, label


def cmd_check(args: argparse.Namespace) -> int:
    """``codl check MODEL --plan plan.json``: co-executed outputs element by element
    against the reference."""
    from .bench.run import check_plan

    plan, pair, graph, module, inputs, label = _plan_and_model(args)
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
    _write_json(args.json, {**artifact_header("check"), "model": label, "plan": args.plan, "against": against, **res})
    return 0 if res["ok"] else 1


def _run_plan(args: argparse.Namespace) -> int:
    """``codl run MODEL --plan plan.json``: the plan on the processors it was made for."""
    from .bench.run import run_plan

    plan, pair, graph, module, inputs, label = _plan_and_model(args)
    _log(f"compiling the plan for {pair[0].label} + {pair[1].label}")
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
    _write_json(args.json, {**artifact_header("run"), "model": label, "plan": args.plan, "plan_meta": plan.meta,
                            "iters": args.iters, "warmup": args.warmup, "latency_source": "measured",
                            "latency_ms": stats.to_json(), "samples_ms": samples, "check": check})
    return 0 if check is None or check["ok"] else 1


def cmd_run(args: argparse.Namespace) -> int:
    from .bench.run import run_single

    if args.iters < 1 or args.warmup < 0:
        raise CodlError(f"-n must be >= 1 and --warmup >= 0 (got -n {args.iters}, --warmup {args.warmup})")
    _check_out_dir(args.json, "--json")
    if args.threads is not None and args.threads > (os.cpu_count() or 1):
        _log(f"warning: --threads {args.threads} is more than the {os.cpu_count()} cores here; "
             f"threads will share cores and timings suffer")
    if args.plan:
        return _run_plan(args)
    proc = _processor(args)
    graph, module, inputs, label = load_model(args)
    _log(f"preparing {len(graph.nodes)} ops on {proc.label}")
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
    _write_json(args.json, {**artifact_header("run"), "model": label, "ops": len(graph.nodes),
                            "gflops": total_flops(graph) / 1e9, "processor": desc, "iters": args.iters,
                            "warmup": args.warmup, "latency_source": "measured", "latency_ms": stats.to_json(),
                            "samples_ms": samples, "check": check})
    return 0 if check is None or check["ok"] else 1


def _pair(args: argparse.Namespace) -> tuple[Processor, Processor]:
    """The two processors of ``-d cpu,cuda`` / ``-d cpu,cpu`` (two groups of half the
    cores each); with ``--native`` the CPU in bf16 and a GPU in fp16, channels-last."""
    from .processors.base import default_pair

    return default_pair(args.device, args.native, args.threads, args.sm_limit)


def cmd_trace(args: argparse.Namespace) -> int:
    from .runtime.session import compile, pair_defaults

    plan = _read_plan(args.plan)
    pair = pair_defaults(_pair(args))
    graph, _, inputs, label = load_model(args)
    _log(f"compiling the plan for {pair[0].label} + {pair[1].label}")
    with compile(graph, plan, pair) as session:
        for _ in range(args.warmup):
            session(*inputs)
        session(*inputs, trace=True)
        session.save_trace(args.out)
        trace = session.last_trace
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
    from .bench.report import predicted_vs_traced

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
    from .plan import plan_graph
    from .plan.simulate import format_summary, placement_summary

    _check_out_dir(args.out, "-o")
    pair = _pair(args)
    graph, _, inputs, label = load_model(args)
    _log(f"planning {label} on {pair[0].label} + {pair[1].label}, strategy {args.strategy}")
    result = plan_graph(graph, pair, args.strategy, inputs=inputs, measure=args.measure, budget_s=_budget(args),
                        refresh=args.refresh_profile)
    plan = result.plan
    from .bench.model import pair_names

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
    from .atomic import write_atomic

    out = Path(args.out)
    write_atomic(out, json.dumps({**plan.to_json(), "summary": summary}, indent=1))
    print(f"plan       {out} (run it: codl run {args.model} --plan {out})")
    return 0


def cmd_bench_model(args: argparse.Namespace) -> int:
    from .bench.model import bench_model, format_results
    from .bench.report import require_matplotlib, traced_strategy
    from .plan import STRATEGIES

    strategies = [s.strip() for s in args.strategies.split(",") if s.strip()]
    unknown = [s for s in strategies if s not in STRATEGIES]
    if unknown:
        raise CodlError(f"--strategies: unknown {unknown} (supported: {', '.join(STRATEGIES)})")
    if args.iters < 1 or args.warmup < 0 or (args.seconds is not None and args.seconds <= 0):
        raise CodlError("-n must be >= 1, --warmup >= 0 and -t > 0")
    _check_out_dir(args.json, "--json")
    pair = _pair(args)
    graph, _, inputs, label = load_model(args)
    if args.report:
        require_matplotlib()
    res = bench_model(graph, pair, inputs, strategies, args.iters, args.warmup, seconds=args.seconds,
                      traced=traced_strategy(strategies) if args.report else None, budget_s=_budget(args),
                      refresh=args.refresh_profile)
    trace = res.pop("_trace", None)
    from . import __version__
    from .fingerprint import fingerprint

    fp = fingerprint()
    print(f"codl {__version__}, torch {torch.__version__}; {fp['cpu']} ({fp['cpu_cores']} cores)"
          + (f", {fp['gpu']} ({fp['gpu_sms']} SMs)" if "gpu" in fp else ""))
    print(f"model        {label}: {len(graph.nodes)} ops, {total_flops(graph) / 1e9:.2f} GFLOPs")
    print(f"processors   {' + '.join(_describe(p) for p in res['processors'])}")
    print(format_results(res))
    _write_json(args.json, {**artifact_header("bench"), "model_label": label, **res})
    if args.report:
        from .bench.report import write_report

        settings = {k: v for k, v in vars(args).items() if k != "fn"}
        for path in write_report({**res, "_trace": trace}, args.report, settings):
            _log(f"wrote {path}")
    return 0


def _check_out_dir(path: str | None, flag: str) -> None:
    """Fail before any work when an output file's directory does not exist."""
    if path and not Path(path).resolve().parent.is_dir():
        raise CodlError(f"{flag} {path}: directory {Path(path).resolve().parent} does not exist")


def _budget(args: argparse.Namespace) -> float | None:
    if args.budget is not None and args.budget <= 0:
        raise CodlError("--budget must be a positive number of minutes")
    return args.budget * 60 if args.budget is not None else None


def profile_budget_args(q: argparse.ArgumentParser) -> None:
    q.add_argument("--budget", type=float, metavar="MIN",
                   help="minutes the first model profile may take per processor pair (heaviest ops first; the rest "
                        "run whole); default: no limit")
    q.add_argument("--refresh-profile", action="store_true", help="measure the model profile again, ignoring the cache")


def _describe(p: dict[str, Any]) -> str:
    extra = f", {p['threads']} threads" if "threads" in p else f", {p.get('name', '')}"
    extra += f", {p['sm_limit']} of {p['sms']} SMs" if p.get("sm_limit") else ""
    return f"{p['device']} ({p['dtype']}{', channels-last' if p['channels_last'] else ''}{extra})"


def cmd_bench_overhead(args: argparse.Namespace) -> int:
    from .bench.overhead import HEADER, format_row, measure

    torch.set_grad_enabled(False)
    rows = []
    print(HEADER)
    for device in args.devices.split(","):
        for name in args.models.split(","):
            rows.append(measure(name, device, args.iters, args.rounds,
                                tuple(args.input_size) if args.input_size else None, args.width, args.native))
            print(format_row(rows[-1]), flush=True)
    _write_json(args.json, {**artifact_header("overhead"), "latency_source": "measured", "results": rows})
    return 0


def cmd_bench_exchange(args: argparse.Namespace) -> int:
    from .bench.exchange import format_table, measure_exchange

    if not torch.cuda.is_available():
        raise CodlError("codl bench exchange measures CPU-GPU exchanges and needs a CUDA GPU; none is available "
                        f"(torch {torch.__version__})")
    if args.iters < 1:
        raise CodlError(f"-n/--iters must be at least 1, got {args.iters}")
    rows = measure_exchange(args.iters, args.sm_limit)
    print(format_table(rows))
    _write_json(args.json, {**artifact_header("exchange"), "latency_source": "measured", "sm_limit": args.sm_limit,
                            "results": rows})
    return 0


def _processor(args: argparse.Namespace) -> Processor:
    return Processor.parse(args.device, args.threads, DTYPES[args.dtype], args.channels_last, args.sm_limit,
                           autotune=args.autotune, own_kernels=args.own_kernels)


def _profile_file(args: argparse.Namespace, proc: Processor) -> Path:
    from .profile import profile_path

    return profile_path(proc, _out_dir(args))


def cmd_profile(args: argparse.Namespace) -> int:
    from . import profile
    from .profile.measure import NOISY_BELOW
    from .profile.sampling import profile_samples

    devices = [d for d in args.device.split(",") if d]
    if len(devices) > 1:  # each device in turn, with the settings that apply to it and its own budget
        ones = []
        for device in devices:
            cpu = device.partition(":")[0] == "cpu"
            ones.append(argparse.Namespace(**{**vars(args), "device": device, "threads": args.threads if cpu else None,
                                              "sm_limit": None if cpu else args.sm_limit,
                                              "autotune": args.autotune and not cpu,
                                              "own_kernels": args.own_kernels, "canary": args.canary and cpu}))
        for one in ones:  # every device checked before the first is profiled for its whole budget
            _processor(one)
        for one in ones:
            if cmd_profile(one):
                return 1
        return 0
    proc = _processor(args)
    if args.transfers:
        return _profile_transfers(args, proc)
    families = args.ops.split(",")
    unknown = set(families) - {"conv", "linear"}
    if unknown:
        raise CodlError(f"--ops {sorted(unknown)}: profiled op families are conv, linear")
    pairs, ops = profile_samples(families, args.models, args.random, args.perturbed, args.seed)
    path = _profile_file(args, proc)
    _log(f"profiling {len(pairs)} samples ({ops} ops, whole and partial) on {proc.label} into {path}")
    added = profile.run_profile(proc, pairs, path, args.budget * 60, args.repeats, args.warmup, args.passes,
                                canary=args.canary)
    print(f"profile    {path}: {added} new measurements this run")
    for family, noise in profile.noise_floor(path).items():  # with two passes or more: how well they agree
        print(f"noise      {family}: two passes of a sample agree within +-10% for {noise['within_10']:.1%} "
              f"of {noise['samples']} samples")
        if noise["within_10"] < NOISY_BELOW:
            _log(f"warning: {proc.label}'s {family} times vary between passes (other load, a shared host, changing "
                 "clock speeds?): no predictor fitted on them can be judged finer than that"
                 + ("; try --canary, pinning to a core (taskset) and an idle machine" if proc.kind.value == "cpu"
                    else "; try an idle machine"))
    return 0


def _out_dir(args: argparse.Namespace) -> Path | None:
    return Path(args.out) if getattr(args, "out", None) else None


def _profile_transfers(args: argparse.Namespace, proc: Processor) -> int:
    from .profile.transfer import run_transfer_profile, transfer_pair

    cpu, cuda, path = transfer_pair(proc, _out_dir(args))
    _log(f"profiling data sharing between {cpu.label}" + (f" and {cuda.label}" if cuda else "") + f" into {path}")
    added = run_transfer_profile(cpu, cuda, path, passes=args.passes)
    print(f"profile    {path}: {added} new measurements this run")
    return 0


def _eval_transfers(args: argparse.Namespace) -> int:
    from .predict.transfer import evaluate_transfers
    from .profile.transfer import load_transfers, transfer_pair

    path = Path(args.profile) if args.profile else transfer_pair(_processor(args), _out_dir(args))[2]
    results = evaluate_transfers(load_transfers(path))
    print(f"data-sharing model on {path.name} (fitted on every other size, scored on the sizes between)")
    print(f"{'kind':<12} {'+-10%':>6} {'+-15%':>6} {'RMSPE':>7} {'fixed us':>9} {'GB/s large':>10} {'split':>9}")
    for kind, r in results.items():
        if r["n_test"]:
            print(f"{kind:<12} {r['within_10']:>6.1%} {r['within_15']:>6.1%} {r['rmspe']:>7.3f} "
                  f"{r['fixed_ms'] * 1e3:>9.1f} {r['gb_per_s']:>10.1f} {r['split_bytes']:>9.3g}")
        else:
            print(f"{kind:<12} measured {r['measured_ms'] * 1e3:.1f} us")
    _write_json(args.json, {**artifact_header("transfer-eval"), "profile": str(path), "results": results})
    return 0


def _profile_rows(args: argparse.Namespace) -> tuple[Path, dict[str, Any], list]:
    """The profile a predictor command works on, what it measured, and its rows."""
    from .predict.profiles import profile_configs
    from .profile.measure import locate_profile

    # --profile: any profile, possibly from another machine: its own settings say what it measured
    path, described = locate_profile(None if args.profile else _processor(args),
                                     Path(args.profile) if args.profile else None, _out_dir(args))
    return path, described, profile_configs(path)


def cmd_predictor_fit(args: argparse.Namespace) -> int:
    from .predict.profiles import fit_per_family

    path, described, rows = _profile_rows(args)
    out_dir = Path(args.models or path.parent)
    out_dir.mkdir(parents=True, exist_ok=True)
    samples = Counter(c.family for _, c, _ in rows)
    for family, model in fit_per_family(rows, described, args.predictor, args.seed).items():
        target = out_dir / f"{path.stem}.{args.predictor}.{family}.json"
        model.save(str(target))
        print(f"{family:<7} {args.predictor} predictor fitted on {samples[family]} samples: {target} "
              f"({target.stat().st_size} bytes)")
    return 0


def _model_op_keys() -> frozenset[str]:
    """The built-in models' op keys (:func:`codl.profile.sampling.model_op_keys`), looked
    up here when called, so that tests can stand in a few ops for the zoo's."""
    from .profile.sampling import model_op_keys

    return model_op_keys()


def cmd_predictor_eval(args: argparse.Namespace) -> int:
    from . import profile
    from .predict.evaluate import evaluate_splits

    if args.transfers:
        return _eval_transfers(args)
    if args.splits < 1:
        raise CodlError("--splits must be at least 1")
    path, described, rows = _profile_rows(args)
    model_ops = _model_op_keys() if args.model_ops else frozenset()
    results = evaluate_splits(rows, described, range(args.seed, args.seed + args.splits), model_ops=model_ops)
    noise = profile.noise_floor(path)
    print(f"predictors on {path.name} ({len(rows)} measured samples; held out by op"
          + (f"; means over {args.splits} random splits, +-10% range in brackets)" if args.splits > 1 else ")"))
    if not noise:
        print("noise floor: not measured (profiled in one pass; `codl profile --passes 2` measures it)")
    for family, n in noise.items():
        print(f"noise floor, {family}: two passes of the same sample agree within +-10% for {n['within_10']:.1%} "
              f"(+-5%: {n['within_5']:.1%}) of {n['samples']} samples")
    print(f"{'family':<8} {'predictor':<9} {'+-5%':>6} {'+-10%':>6} {'+-15%':>6} {'RMSPE':>7} {'bytes':>6} {'us/pred':>8} {'train/test':>11}")
    for family, models in results.items():
        for name, m in models.items():
            spread = f" [{m['within_10_min']:.1%}-{m['within_10_max']:.1%}]" if args.splits > 1 else ""
            print(f"{family:<8} {name:<9} {m['within_5']:>6.1%} {m['within_10']:>6.1%} {m['within_15']:>6.1%} "
                  f"{m['rmspe']:>7.3f} {m['size_bytes']:>6.0f} {m['us_per_prediction']:>8.1f} "
                  f"{m['n_train']:>5.0f}/{m['n_test']:<5.0f}{spread}")
    for family, models in results.items():
        if any("within_10_model_ops" in m for m in models.values()):
            shares = ", ".join(f"{name} {m['within_10_model_ops']:.1%}" for name, m in models.items())
            n = next(iter(models.values()))["n_model_ops"]
            print(f"{family:<8} +-10% on the built-in models' own ops (~{n:.0f} test samples per split): {shares}")
    _write_json(args.json, {**artifact_header("predictor-eval"), "profile": str(path),
                            "processor": described, "noise_floor": noise, "results": results})
    return 0


def _write_json(path: str | None, data: dict[str, Any]) -> None:
    """Write ``data`` whole or not at all (a temporary file renamed into place)."""
    if path:
        from .atomic import write_atomic

        try:
            write_atomic(path, json.dumps(data, indent=1))
        except OSError as e:
            raise CodlError(f"cannot write {path}: {e.strerror or e}") from None
        _log(f"wrote {path}")


def device_args(q: argparse.ArgumentParser) -> None:
    """The options that make a :class:`Processor` (see ``_processor``)."""
    q.add_argument("-d", "--device", default="cpu", help="cpu, cuda, cuda:N, mps or xpu")
    q.add_argument("--threads", type=int, help="CPU threads (default: torch's)")
    q.add_argument("--dtype", choices=sorted(DTYPES), default="fp32", help="compute type")
    q.add_argument("--channels-last", action="store_true", help="keep 4-D tensors channels-last (NHWC)")
    q.add_argument("--sm-limit", type=int, help="cuda: run on at most this many SMs (CUDA green context)")
    q.add_argument("--autotune", action="store_true",
                   help="cuda: let cuDNN time its kernels for each shape and keep the fastest")
    q.add_argument("--own-kernels", action="store_true",
                   help="cuda: run convs and linears on codl's own Triton kernels, tiled for the SMs in use; "
                        "cpu: run ungrouped convs as an im2col copy in row blocks and one GEMM per block "
                        "(predictable latency; see docs/architecture.md)")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="codl", description="CPU-GPU co-execution of DL inference")
    sub = p.add_subparsers(dest="command", required=True)
    m = sub.add_parser("models", help="list the built-in models")
    m.add_argument("--json", help="also write the table to this JSON file")
    m.set_defaults(fn=cmd_models)
    for name, fn, text in (("inspect", cmd_inspect, "per-op table of a model"),
                           ("run", cmd_run, "run a model on one processor and time it"),
                           ("trace", cmd_trace, "run a plan once, traced, and write a Perfetto trace"),
                           ("plan", cmd_plan, "plan how to split a model between the CPU and a GPU (or two CPU groups)"),
                           ("check", cmd_check, "co-executed outputs of a plan against the reference, element by element")):
        s = sub.add_parser(name, help=text)
        s.add_argument("model", help="built-in model name or path to an .onnx file")
        s.add_argument("--input-size", type=int, nargs=2, metavar=("H", "W"), help="input size of a built-in model")
        s.add_argument("--width", type=float, default=1.0, help="channel multiplier of a built-in model")
        s.add_argument("--input-shape", action="append", metavar="NAME=1x3xHxW",
                       help="static shape for an ONNX input with symbolic dimensions")
        s.add_argument("--json", help="also write the result to this JSON file")
        s.set_defaults(fn=fn)
        if name == "run":
            device_args(s)
            s.add_argument("-n", "--iters", type=int, default=20, help="timed runs")
            s.add_argument("--warmup", type=int, default=5, help="untimed runs first")
            s.add_argument("--no-check", dest="check", action="store_false",
                           help="skip comparing outputs with the reference")
            s.add_argument("--plan", help="run this plan (from codl plan) on the processors it names instead of -d")
        if name == "plan":
            from .plan import STRATEGIES

            s.add_argument("--strategy", choices=STRATEGIES, default="codl", help="how to plan (default: codl)")
            s.add_argument("-o", "--out", default="plan.json", help="plan JSON to write")
            s.add_argument("--measure", action="store_true",
                           help="time the plan and the faster processor alone in sessions; keep the faster")
            profile_budget_args(s)
        if name == "check":
            s.add_argument("--plan", required=True, help="plan JSON from codl plan (it names its processors)")
            s.add_argument("--rtol", type=float, help="relative tolerance (default: by the processors' types: "
                                                      "fp32 1e-4, fp16 1e-2, bf16 5e-2)")
            s.add_argument("--atol", type=float, help="absolute tolerance (default: rtol x the largest |reference|)")
        if name in ("trace", "plan"):
            s.add_argument("-d", "--device", default="cpu,cuda" if torch.cuda.is_available() else "cpu,cpu",
                           help="the two processors, CPU first: cpu,cuda or cpu,cpu (two core groups)")
            s.add_argument("--threads", type=int, help="CPU threads beside a GPU (default: all cores but one)")
            s.add_argument("--sm-limit", type=int, help="cuda: run on at most this many SMs")
            s.add_argument("--native", action="store_true", help="CPU in bf16 and GPU in fp16, channels-last")
        if name == "trace":
            s.add_argument("--plan", required=True, help="plan JSON (codl.plan.Plan.to_json)")
            s.add_argument("-o", "--out", default="codl-trace.json", help="trace-event JSON to write")
            s.add_argument("--warmup", type=int, default=3, help="untraced calls first")
    def processor_args(q: argparse.ArgumentParser) -> None:
        device_args(q)
        q.add_argument("--seed", type=int, default=0)

    pr = sub.add_parser("profile", help="measure op samples on a processor (resumable)",
                        description="Measure op samples (or, with --transfers, data sharing) on a processor. "
                                    "-d takes a comma-separated list (e.g. cpu,cuda) to profile each in turn.")
    processor_args(pr)
    pr.add_argument("--budget", type=float, default=20.0, help="minutes to spend at most (per device)")
    pr.add_argument("--ops", default="conv,linear", help="op families to profile: conv, linear")
    pr.add_argument("--random", type=int, default=150, help="random ops per family (CoDL's ranges)")
    pr.add_argument("--no-models", dest="models", action="store_false", help="skip the built-in models' ops")
    pr.add_argument("--perturbed", type=int, default=2, help="variants of each built-in model op, near it")
    pr.add_argument("--repeats", type=int, default=5, help="timed blocks of back-to-back calls per measurement")
    pr.add_argument("--warmup", type=int, default=2)
    pr.add_argument("--passes", type=int, default=2,
                    help="times each sample is measured, in whole passes minutes apart (noise floor)")
    pr.add_argument("--canary", action="store_true",
                    help="cpu on a machine whose speed drifts (a shared host): time a reference GEMM before each "
                         "measurement and scale the measurement by it (the profile's times are then at the "
                         "machine's usual speed)")
    pr.add_argument("--out", help="directory for the profile (default: the codl cache)")
    pr.add_argument("--transfers", action="store_true",
                    help="profile data sharing (copies, conversions, sync) between the CPU and -d instead of ops")
    pr.set_defaults(fn=cmd_profile)
    pe = sub.add_parser("predictor", help="latency predictors").add_subparsers(dest="predictor", required=True)
    ev = pe.add_parser("eval", help="fit the predictors on a profile and score them on held-out ops")
    processor_args(ev)
    ev.add_argument("--profile", help="profile CSV (default: this processor's in the cache)")
    ev.add_argument("--out", help="directory the profile was written to")
    ev.add_argument("--transfers", action="store_true", help="evaluate the data-sharing model instead")
    ev.add_argument("--no-model-ops", dest="model_ops", action="store_false",
                    help="skip the share on the built-in models' own ops (building them takes half a minute once)")
    ev.add_argument("--splits", type=int, default=1, help="random train/test splits to average over (seeds from --seed)")
    ev.add_argument("--json")
    ev.set_defaults(fn=cmd_predictor_eval)
    fi = pe.add_parser("fit", help="fit a predictor on a whole profile and save it (one JSON per op family)")
    processor_args(fi)
    fi.add_argument("--profile", help="profile CSV (default: this processor's in the cache)")
    fi.add_argument("--out", help="directory the profile was written to")
    fi.add_argument("--predictor", choices=("analytic", "flops", "forest"), default="analytic")
    fi.add_argument("--models", help="directory for the model files (default: beside the profile)")
    fi.set_defaults(fn=cmd_predictor_fit)

    b = sub.add_parser("bench", help="codl bench MODEL: every strategy measured against the best single processor; "
                                     "codl bench overhead|exchange: the executor").add_subparsers(dest="bench", required=True)
    bm = b.add_parser("model", help="(codl bench MODEL) plan with each strategy and time them interleaved")
    bm.add_argument("model", help="built-in model name or path to an .onnx file")
    bm.add_argument("--input-size", type=int, nargs=2, metavar=("H", "W"), help="input size of a built-in model")
    bm.add_argument("--width", type=float, default=1.0, help="channel multiplier of a built-in model")
    bm.add_argument("--input-shape", action="append", metavar="NAME=1x3xHxW",
                    help="static shape for an ONNX input with symbolic dimensions")
    bm.add_argument("-d", "--device", default="cpu,cuda" if torch.cuda.is_available() else "cpu,cpu",
                    help="the two processors, CPU first: cpu,cuda or cpu,cpu (two core groups)")
    bm.add_argument("--threads", type=int, help="CPU threads beside a GPU (default: all cores but one)")
    bm.add_argument("--sm-limit", type=int, help="cuda: run on at most this many SMs")
    bm.add_argument("--native", action="store_true", help="CPU in bf16 and GPU in fp16, channels-last")
    bm.add_argument("--strategies", default="layer-switch,mulayer,codl",
                    help="comma-separated, of: cpu, gpu, layer-switch, mulayer, codl, oracle "
                         "(the two single processors are always timed)")
    bm.add_argument("-n", "--iters", type=int, default=30, help="timed rounds (each times every plan once)")
    bm.add_argument("-t", "--seconds", type=float, help="time rounds for this long instead of -n (at least 3)")
    bm.add_argument("--warmup", type=int, default=5, help="untimed calls of each plan first")
    bm.add_argument("--json", help="also write the results to this JSON file")
    profile_budget_args(bm)
    bm.add_argument("--report", metavar="DIR", help="write results.json, ops.csv, a Perfetto trace of the codl plan "
                                                    "and PNG plots into DIR (needs matplotlib)")
    bm.set_defaults(fn=cmd_bench_model)
    o = b.add_parser("overhead", help="session vs reference with every node on one processor")
    o.add_argument("--models", default=",".join(zoo.MODELS))
    o.add_argument("--devices", default="cpu", help="comma-separated: cpu, cuda, cuda@N (N SMs)")
    o.add_argument("--native", action="store_true", help="CPU in bf16 and GPU in fp16, channels-last (else fp32)")
    o.add_argument("-n", "--iters", type=int, default=10, help="runs per way per round")
    o.add_argument("--rounds", type=int, default=3)
    o.add_argument("--input-size", type=int, nargs=2, metavar=("H", "W"))
    o.add_argument("--width", type=float, default=1.0)
    o.add_argument("--json")
    o.set_defaults(fn=cmd_bench_overhead)
    e = b.add_parser("exchange", help="CPU <-> GPU exchanges through the session's channels, 64 KB to 32 MB, "
                                      "beside the raw pinned copy (CUDA)")
    e.add_argument("-n", "--iters", type=int, default=50, help="timed rounds (each times every size and way once)")
    e.add_argument("--sm-limit", type=int, help="run the GPU side (its conversions) on this many SMs")
    e.add_argument("--json")
    e.set_defaults(fn=cmd_bench_exchange)
    return p


class _Defaults(argparse.HelpFormatter):
    """Help that shows an option's default where it has a value its text does not give."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if action.default not in (None, False, argparse.SUPPRESS) and "default" not in text and action.option_strings:
            text += " (default: %(default)s)"
        return text


def _show_defaults(parser: argparse.ArgumentParser) -> None:
    """Every parser and subparser lists its options' defaults in --help."""
    parser.formatter_class = _Defaults
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in set(action.choices.values()):
                _show_defaults(sub)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if len(argv) > 1 and argv[0] == "bench" and argv[1] not in ("overhead", "exchange", "model") \
            and not argv[1].startswith("-"):
        argv.insert(1, "model")  # codl bench MODEL
    parser = build_parser()
    _show_defaults(parser)
    args = parser.parse_args(argv)
    try:
        return int(args.fn(args))
    except CodlError as e:
        print(f"codl: error: {e}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # output piped into head & co.
        sys.stderr.close()
        return 0


if __name__ == "__main__":
    sys.exit(main())
