"""The argument parser: every command, its options and their defaults."""

from __future__ import annotations

import argparse

import torch

from .. import zoo
from .bench import cmd_bench_exchange, cmd_bench_model, cmd_bench_overhead
from ..processors.base import OWN_KERNELS
from .common import DTYPES
from .predictor import cmd_predictor_eval, cmd_predictor_fit, cmd_profile
from .run import cmd_check, cmd_inspect, cmd_models, cmd_plan, cmd_run, cmd_trace


def device_args(q: argparse.ArgumentParser) -> None:
    """The options that make a :class:`Processor` (see ``processor_of``)."""
    q.add_argument("-d", "--device", default="cpu", help="cpu, cuda, cuda:N, mps or xpu")
    q.add_argument("--threads", type=int, help="CPU threads (default: torch's)")
    q.add_argument("--dtype", choices=sorted(DTYPES), default="fp32", help="compute type")
    q.add_argument("--channels-last", action="store_true", default=None,
                   help="keep 4-D tensors channels-last (NHWC); always so with --own-kernels on the cpu")
    q.add_argument("--sm-limit", type=int, help="cuda: run on at most this many SMs (CUDA green context)")
    q.add_argument("--autotune", action="store_true",
                   help="cuda: let cuDNN time its kernels for each shape and keep the fastest")
    q.add_argument("--own-kernels", action="store_true",
                   help="cuda: run convs and linears on codl's own Triton kernels, tiled for the SMs in use; "
                        "cpu: run ungrouped convs as an im2col copy in row blocks and one GEMM per block "
                        "(predictable latency; see docs/architecture.md)")
    fastest_kernels_arg(q)


FASTEST_HELP = ("cuda, fp16/bf16: run each conv and linear shape on the faster of the libraries' kernels and "
                "codl's own, both timed on its first call")


def fastest_kernels_arg(q: argparse.ArgumentParser) -> None:
    q.add_argument("--fastest-kernels", action="store_true", help=FASTEST_HELP)


def own_kernels_arg(q: argparse.ArgumentParser) -> None:
    """``--own-kernels [both|cpu|gpu]`` for the commands that take a pair of processors."""
    q.add_argument("--own-kernels", nargs="?", const="both", choices=OWN_KERNELS,
                   help="run on codl's own kernels (CPU convs; GPU convs and linears): both processors (the "
                        "default when given bare), or only the cpu or the gpu")
    fastest_kernels_arg(q)


def profile_budget_args(q: argparse.ArgumentParser) -> None:
    q.add_argument("--budget", type=float, metavar="MIN",
                   help="minutes the first model profile may take per processor pair (heaviest ops first; the rest "
                        "run whole); default: no limit")
    q.add_argument("--refresh-profile", action="store_true", help="measure the model profile again, ignoring the cache")


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
            from ..plan import COSTS, STRATEGIES

            s.add_argument("--strategy", choices=STRATEGIES, default="codl", help="how to plan (default: codl)")
            s.add_argument("-o", "--out", default="plan.json", help="plan JSON to write")
            s.add_argument("--measure", action="store_true",
                           help="time the plan and the faster processor alone in sessions; keep the faster")
            s.add_argument("--costs", choices=COSTS, default="profile",
                           help="profile: the model's own ops measured (a model profile, cached); predictors: "
                                "convs and linears predicted by the fitted predictors of each processor, the "
                                "other ops measured whole (default: profile)")
            s.add_argument("--predictors", nargs="+", metavar="PATH",
                           help="with --costs predictors: predictor files or directories holding them "
                                "(default: the codl cache, where codl profile and codl predictor fit write)")
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
            own_kernels_arg(s)
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
    own_kernels_arg(bm)
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


def show_defaults(parser: argparse.ArgumentParser) -> None:
    """Every parser and subparser lists its options' defaults in --help."""
    parser.formatter_class = _Defaults
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in set(action.choices.values()):
                show_defaults(sub)
