"""codl: run one deep-learning inference on the CPU and a GPU at the same time.

    import codl
    session = codl.compile(model_or_graph, plan, (cpu, gpu))   # see codl.runtime.session
    outputs = session(x)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from .plan import Plan
    from .processors import Processor
    from .runtime.session import Session


def compile(model: Any, plan: "Plan", processors: "tuple[Processor, Processor]", sync: str = "auto",  # noqa: A001
            example: Any = None) -> "Session":
    """Prepare ``plan`` for co-execution. ``model`` is a :class:`~codl.ir.Graph`, a path
    to an ``.onnx`` file, or a ``torch.nn.Module`` (then ``example`` gives the input it is
    traced with). ``processors`` is (CPU side, other side); ``sync`` "auto" (flags and a
    CUDA graph where they work), "events" or "flags"."""
    import os

    import torch

    from .errors import CodlError
    from .frontends import from_torch, load_onnx
    from .ir import Graph
    from .runtime.session import Session

    if isinstance(model, Graph):
        graph = model
    elif isinstance(model, (str, os.PathLike)):
        graph = load_onnx(model)
    elif isinstance(model, torch.nn.Module):
        if example is None:
            raise CodlError("compiling an nn.Module needs example=<input tensor(s)> to trace it with")
        graph = from_torch(model, example, name=plan.graph)
    else:
        raise CodlError(f"cannot compile a {type(model).__name__}; give a Graph, an .onnx path or an nn.Module")
    return Session(graph, plan, processors, sync)
