"""codl: run one deep-learning inference on the CPU and a GPU at the same time.

    import codl
    session = codl.compile(model, example=x)       # plan="auto": planned from the cached model profile
    outputs = session(x)
    results = codl.benchmark(model, example=x)     # every strategy against the best single processor
    print(codl.format_benchmark(results))
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from .ir import Graph
    from .plan import Plan
    from .processors import Processor
    from .runtime.session import Session


def _graph(model: Any, example: Any, name: str | None) -> "Graph":
    import os

    import torch

    from .errors import CodlError
    from .frontends import from_torch, load_onnx
    from .ir import Graph

    if isinstance(model, Graph):
        return model
    if isinstance(model, (str, os.PathLike)):
        return load_onnx(model)
    if isinstance(model, torch.nn.Module):
        if example is None:
            raise CodlError("an nn.Module needs example=<input tensor(s)> to trace it with")
        return from_torch(model, example, name=name or type(model).__name__.lower())
    raise CodlError(f"cannot use a {type(model).__name__}; give a Graph, an .onnx path or an nn.Module")


def compile(model: Any, plan: "Plan | str" = "auto",  # noqa: A001
            processors: "tuple[Processor, Processor] | None" = None, sync: str = "auto", example: Any = None,
            strategy: str = "codl") -> "Session":
    """Prepare ``model`` for co-execution. ``model`` is a :class:`~codl.ir.Graph`, a path
    to an ``.onnx`` file, or a ``torch.nn.Module`` (then ``example`` gives the input it is
    traced with). ``plan`` is a :class:`~codl.plan.Plan` or "auto": planned with
    ``strategy`` from the model profile (measured on first use, then cached), behind the
    never-slower guard. ``processors`` is (CPU side, other side); default the CPU with a
    CUDA GPU where one is found, else two CPU groups. ``sync`` "auto" (flags and a CUDA
    graph where they work), "events" or "flags"."""
    from .errors import CodlError
    from .processors import default_pair
    from .runtime.session import compile as compile_plan

    processors = processors or default_pair()
    if isinstance(plan, str):
        if plan != "auto":
            raise CodlError(f"plan={plan!r}: give a Plan or 'auto'")
        from .plan import plan_graph

        graph = _graph(model, example, None)
        plan = plan_graph(graph, processors, strategy).plan
    else:
        graph = _graph(model, example, plan.graph)
    return compile_plan(graph, plan, processors, sync)


def benchmark(model: Any, processors: "tuple[Processor, Processor] | None" = None, example: Any = None,
              strategies: tuple[str, ...] = ("layer-switch", "mulayer", "codl"), iters: int = 30, warmup: int = 5,
              progress: bool = True) -> dict[str, Any]:
    """What ``codl bench MODEL`` measures, as a dict (see
    :func:`codl.bench.model.bench_model`); :func:`format_benchmark` prints it the CLI's way."""
    from .bench.model import bench_model
    from .processors import default_pair
    from .runtime import random_inputs

    processors = processors or default_pair()
    graph = _graph(model, example, None)
    inputs = list(example) if isinstance(example, (list, tuple)) else [example] if example is not None \
        else random_inputs(graph)
    res = bench_model(graph, processors, inputs, list(strategies), iters, warmup, progress)
    res.pop("_trace", None)
    return res


def format_benchmark(results: dict[str, Any]) -> str:
    from .bench.model import format_results

    return format_results(results)
