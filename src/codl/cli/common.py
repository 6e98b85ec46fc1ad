"""What the commands share: reading the model, plan and processors their arguments name,
output files, progress on stderr."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import torch

from .. import zoo
from ..errors import CodlError
from ..frontends import load_onnx
from ..ir import DType, Graph
from ..processors import Processor
from ..runtime import random_inputs

if TYPE_CHECKING:
    from ..plan import Plan

DTYPES = {"fp32": DType.FLOAT32, "fp16": DType.FLOAT16, "bf16": DType.BFLOAT16}


def log(text: str) -> None:
    """Progress and warnings, on stderr."""
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
        log(f"importing {model}")
        graph = load_onnx(model, _input_shapes(args.input_shape))
        return graph, None, random_inputs(graph), model
    if getattr(args, "input_shape", None):
        raise CodlError("--input-shape applies to ONNX files; for a built-in model give --input-size H W")
    spec = zoo.spec(model)
    hw = tuple(args.input_size) if args.input_size else spec.input_size
    log(f"building {model} at {hw[0]}x{hw[1]}, width {args.width} (seeded random weights)")
    module, x = zoo.build(model, hw, args.width)
    from ..frontends import from_torch

    graph = from_torch(module, x, name=model)
    return graph, module, [x], f"{model} ({hw[0]}x{hw[1]}, width {args.width})"


def read_plan(path: str) -> "Plan":
    """The plan in a JSON file, with one-line errors for unreadable or invalid ones."""
    from ..plan import Plan, PlanError

    try:
        return Plan.from_json(json.loads(Path(path).read_text()))
    except (OSError, ValueError) as e:
        raise CodlError(f"cannot read plan {path}: {e}") from None
    except PlanError as e:
        raise CodlError(f"{path}: {e}") from None


def plan_and_model(args: argparse.Namespace) -> tuple:
    """The plan file, the processors it names, and the model it is for."""
    plan = read_plan(args.plan)
    described = plan.meta.get("processors")
    if not described or len(described) != 2:
        raise CodlError(f"{args.plan} does not name its two processors (make it with codl plan); "
                        f"hand-made plans run with codl trace MODEL --plan FILE -d cpu,cuda")
    pair = (Processor.from_description(described[0]), Processor.from_description(described[1]))
    graph, module, inputs, label = load_model(args)
    if plan.graph != graph.name:
        raise CodlError(f"{args.plan} is a plan for {plan.graph!r}, not {graph.name!r}")
    return plan, pair, graph, module, inputs, label


def processor_of(args: argparse.Namespace) -> Processor:
    """The processor of ``-d`` and the options :func:`codl.cli.parser.device_args` adds."""
    return Processor.parse(args.device, args.threads, DTYPES[args.dtype], args.channels_last, args.sm_limit,
                           autotune=args.autotune, own_kernels=args.own_kernels,
                           fastest_kernels=args.fastest_kernels)


def pair_of(args: argparse.Namespace) -> tuple[Processor, Processor]:
    """The two processors of ``-d cpu,cuda`` / ``-d cpu,cpu`` (two groups of half the
    cores each); with ``--native`` the CPU in bf16 and a GPU in fp16, channels-last; with
    ``--own-kernels`` (where the command has it) both on codl's own kernels, and with
    ``--fastest-kernels`` the GPU on the faster source per conv and linear shape."""
    from ..processors.base import default_pair

    return default_pair(args.device, args.native, args.threads, args.sm_limit, getattr(args, "own_kernels", False),
                        getattr(args, "fastest_kernels", False))


def profile_file(args: argparse.Namespace, proc: Processor) -> Path:
    """This machine's profile of ``proc``, under ``--out`` where given."""
    from ..profile import profile_path

    return profile_path(proc, out_dir_of(args))


def out_dir_of(args: argparse.Namespace) -> Path | None:
    """``--out``, where the command has it and it is given."""
    return Path(args.out) if getattr(args, "out", None) else None


def check_out_dir(path: str | None, flag: str) -> None:
    """Fail before any work when an output file's directory does not exist."""
    if path and not Path(path).resolve().parent.is_dir():
        raise CodlError(f"{flag} {path}: directory {Path(path).resolve().parent} does not exist")


def budget_of(args: argparse.Namespace) -> float | None:
    """``--budget`` (minutes) in seconds; None for no limit."""
    if args.budget is not None and args.budget <= 0:
        raise CodlError("--budget must be a positive number of minutes")
    return args.budget * 60 if args.budget is not None else None


def write_json(path: str | None, data: dict[str, Any]) -> None:
    """Write ``data`` whole or not at all (a temporary file renamed into place)."""
    if path:
        from ..atomic import write_atomic

        try:
            write_atomic(path, json.dumps(data, indent=1))
        except OSError as e:
            raise CodlError(f"cannot write {path}: {e.strerror or e}") from None
        log(f"wrote {path}")
