"""``codl bench MODEL | overhead | exchange``."""

from __future__ import annotations

import argparse
from typing import Any

import torch

from .. import __version__
from ..errors import CodlError
from ..fingerprint import artifact_header, fingerprint
from ..ir import total_flops
from .common import budget_of, check_out_dir, load_model, log, pair_of, write_json


def cmd_bench_model(args: argparse.Namespace) -> int:
    from ..bench.model import bench_model, format_results
    from ..bench.report import require_matplotlib, traced_strategy, write_report
    from ..plan import STRATEGIES

    strategies = [s.strip() for s in args.strategies.split(",") if s.strip()]
    unknown = [s for s in strategies if s not in STRATEGIES]
    if unknown:
        raise CodlError(f"--strategies: unknown {unknown} (supported: {', '.join(STRATEGIES)})")
    if args.iters < 1 or args.warmup < 0 or (args.seconds is not None and args.seconds <= 0):
        raise CodlError("-n must be >= 1, --warmup >= 0 and -t > 0")
    check_out_dir(args.json, "--json")
    pair = pair_of(args)
    graph, _, inputs, label = load_model(args)
    if args.report:
        require_matplotlib()
    res = bench_model(graph, pair, inputs, strategies, args.iters, args.warmup, seconds=args.seconds,
                      traced=traced_strategy(strategies) if args.report else None, budget_s=budget_of(args),
                      refresh=args.refresh_profile)
    trace = res.pop("_trace", None)
    fp = fingerprint()
    print(f"codl {__version__}, torch {torch.__version__}; {fp['cpu']} ({fp['cpu_cores']} cores)"
          + (f", {fp['gpu']} ({fp['gpu_sms']} SMs)" if "gpu" in fp else ""))
    print(f"model        {label}: {len(graph.nodes)} ops, {total_flops(graph) / 1e9:.2f} GFLOPs")
    print(f"processors   {' + '.join(_describe(p) for p in res['processors'])}")
    print(format_results(res))
    write_json(args.json, {**artifact_header("bench"), "model_label": label, **res})
    if args.report:
        settings = {k: v for k, v in vars(args).items() if k != "fn"}
        for path in write_report({**res, "_trace": trace}, args.report, settings):
            log(f"wrote {path}")
    return 0


def _describe(p: dict[str, Any]) -> str:
    extra = f", {p['threads']} threads" if "threads" in p else f", {p.get('name', '')}"
    extra += f", {p['sm_limit']} of {p['sms']} SMs" if p.get("sm_limit") else ""
    extra += ", codl's own kernels" if p.get("kernels") == "codl" else ""
    return f"{p['device']} ({p['dtype']}{', channels-last' if p['channels_last'] else ''}{extra})"


def cmd_bench_overhead(args: argparse.Namespace) -> int:
    from ..bench.overhead import HEADER, format_row, measure

    torch.set_grad_enabled(False)
    rows = []
    print(HEADER)
    for device in args.devices.split(","):
        for name in args.models.split(","):
            rows.append(measure(name, device, args.iters, args.rounds,
                                tuple(args.input_size) if args.input_size else None, args.width, args.native))
            print(format_row(rows[-1]), flush=True)
    write_json(args.json, {**artifact_header("overhead"), "latency_source": "measured", "results": rows})
    return 0


def cmd_bench_exchange(args: argparse.Namespace) -> int:
    from ..bench.exchange import format_table, measure_exchange

    if not torch.cuda.is_available():
        raise CodlError("codl bench exchange measures CPU-GPU exchanges and needs a CUDA GPU; none is available "
                        f"(torch {torch.__version__})")
    if args.iters < 1:
        raise CodlError(f"-n/--iters must be at least 1, got {args.iters}")
    rows = measure_exchange(args.iters, args.sm_limit)
    print(format_table(rows))
    write_json(args.json, {**artifact_header("exchange"), "latency_source": "measured", "sm_limit": args.sm_limit,
                           "results": rows})
    return 0
