"""Single-processor execution of a Graph: the reference every co-executed run is checked
against, and the CPU-only / GPU-only baselines.

``ReferenceRunner`` prepares everything once (constants moved to the device and cast to
the processor's dtype, 4-D tensors made channels-last if asked, one kernel per node,
tensor slots and the point after which each intermediate can be freed), so a call does
only the per-node kernel launches.

Example::

    runner = ReferenceRunner(graph, Processor.parse("cpu", threads=4))
    (y,) = runner(x)
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import torch

from ..errors import CodlError, ExecutionError
from ..ir.graph import Graph
from ..ops import family
from ..processors import Processor


def to_processor(t: torch.Tensor, proc: Processor) -> torch.Tensor:
    """``t`` on ``proc``'s device, in its type (floats only) and memory format."""
    dtype = proc.torch_dtype if t.is_floating_point() else t.dtype
    fmt = torch.channels_last if proc.channels_last and t.dim() == 4 else torch.contiguous_format
    return t.to(device=proc.device, dtype=dtype).contiguous(memory_format=fmt)


class ReferenceRunner:
    """Runs ``graph`` whole on one processor."""

    def __init__(self, graph: Graph, processor: Processor) -> None:
        self.graph, self.processor = graph, processor
        processor.activate()
        names = [s.name for s in graph.inputs] + list(graph.constants) + [o for n in graph.nodes for o in n.outputs]
        slot = {name: i for i, name in enumerate(names)}
        self._slot = slot
        self._slots: list[torch.Tensor | None] = [None] * len(names)
        for name, value in graph.constants.items():
            self._slots[slot[name]] = to_processor(torch.from_numpy(np.array(value)), processor)
        last_use: dict[str, int] = {}
        for step, node in enumerate(graph.nodes):
            for i in node.inputs:
                last_use[i] = step
        keep = set(graph.outputs) | set(graph.constants)
        self._steps = []
        backend = processor.backend
        for step, node in enumerate(graph.nodes):
            free = [slot[i] for i in dict.fromkeys(node.inputs) if last_use[i] == step and i not in keep]
            self._steps.append((node, family(node.op).kernel(node, backend), [slot[i] for i in node.inputs],
                                [slot[o] for o in node.outputs], free))
        self._out_slots = [slot[o] for o in graph.outputs]
        processor.synchronize()  # constants are in place before work on another stream reads them

    def __call__(self, *inputs: torch.Tensor | Mapping[str, torch.Tensor]) -> list[torch.Tensor]:
        """Run once. Inputs: tensors in graph-input order, or one dict by name. Returns the
        outputs in the processor's dtype, on its device (not synchronised)."""
        values = self._execute(inputs, keep_all=False)
        return [values[i] for i in self._out_slots]  # type: ignore[misc]

    def run_all(self, *inputs: torch.Tensor | Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Run once keeping every intermediate tensor, by name (for debugging numerics
        and for checking shape inference against execution)."""
        values = self._execute(inputs, keep_all=True)
        names = [s.name for s in self.graph.inputs] + [o for n in self.graph.nodes for o in n.outputs]
        return {name: values[self._slot[name]] for name in names}  # type: ignore[misc]

    def _execute(self, inputs: Sequence[torch.Tensor | Mapping[str, torch.Tensor]], keep_all: bool) -> list[torch.Tensor | None]:
        values = self._slots[:]
        with torch.inference_mode(), self.processor.work_context():
            for i, t in enumerate(bind_inputs(self.graph, inputs)):
                values[i] = to_processor(t, self.processor)
            for node, kernel, ins, outs, free in self._steps:
                try:
                    result = kernel(*[values[i] for i in ins])
                except Exception as e:
                    raise ExecutionError.of_node(node, [values[i] for i in ins], e) from e
                if isinstance(result, torch.Tensor):
                    values[outs[0]] = result
                else:
                    for o, r in zip(outs, result):
                        values[o] = r
                if not keep_all:
                    for i in free:
                        values[i] = None
        return values


def bind_inputs(graph: Graph, inputs: Sequence[torch.Tensor | Mapping[str, torch.Tensor]]) -> list[torch.Tensor]:
    """Inputs given positionally or as one dict by name, checked against the graph's."""
    specs = graph.inputs
    if len(inputs) == 1 and isinstance(inputs[0], Mapping):
        by_name = inputs[0]
        missing = [s.name for s in specs if s.name not in by_name]
        if missing:
            raise CodlError(f"missing inputs {missing}; graph inputs are {[s.name for s in specs]}")
        tensors = [by_name[s.name] for s in specs]
    else:
        tensors = list(inputs)  # type: ignore[arg-type]
    if len(tensors) != len(specs):
        raise CodlError(f"graph {graph.name!r} takes {len(specs)} inputs, got {len(tensors)}")
    out = []
    for t, s in zip(tensors, specs):
        if isinstance(t, np.ndarray):
            t = torch.from_numpy(t)
        if not isinstance(t, torch.Tensor):
            raise CodlError(f"input {s.name!r} must be a torch.Tensor or numpy array of shape {list(s.shape)}, "
                            f"got {type(t).__name__}")
        if tuple(t.shape) != s.shape:
            raise CodlError(f"input {s.name!r} must have shape {list(s.shape)}, got {list(t.shape)}")
        if s.dtype.is_float != t.is_floating_point():
            raise CodlError(f"input {s.name!r} must be a {'floating-point' if s.dtype.is_float else 'integer'} "
                            f"tensor ({s.dtype.value}), got {t.dtype}")
        out.append(t)
    return out


def random_inputs(graph: Graph, seed: int = 0) -> list[torch.Tensor]:
    """Seeded standard-normal float inputs (zeros for integer inputs) matching the graph."""
    gen = torch.Generator().manual_seed(seed)
    out = []
    for s in graph.inputs:
        if s.dtype.is_float:
            out.append(torch.randn(s.shape, generator=gen))
        else:
            out.append(torch.zeros(s.shape, dtype=torch.int64))
    return out
