"""Readable views of a graph: a text dump and the per-op table ``codl inspect`` prints."""

from __future__ import annotations

from dataclasses import dataclass

from .graph import Graph, Node


@dataclass(frozen=True)
class OpRow:
    """One node's line in ``codl inspect``."""

    name: str
    op: str
    inputs: list[str]  # runtime input specs, e.g. "float32[1x3x224x224]"
    outputs: list[str]
    flops: int
    params: int


def node_flops(graph: Graph, node: Node) -> int:
    """FLOPs of one node (a multiply-add counts 2), from its op family."""
    from ..ops import family  # the registry imports the IR, not the other way round

    ins = [graph.spec(i) for i in node.inputs]
    outs = [graph.spec(o) for o in node.outputs]
    return int(family(node.op).flops(node, ins, outs))


def op_rows(graph: Graph) -> list[OpRow]:
    rows = []
    for n in graph.nodes:
        runtime = [i for i in n.inputs if not graph.is_constant(i)]
        params = sum(graph.constants[i].size for i in n.inputs if graph.is_constant(i))
        rows.append(OpRow(n.name, n.op.value, [str(graph.spec(i)) for i in runtime],
                          [str(graph.spec(o)) for o in n.outputs], node_flops(graph, n), int(params)))
    return rows


def total_flops(graph: Graph) -> int:
    return sum(node_flops(graph, n) for n in graph.nodes)


def format_graph(graph: Graph) -> str:
    """A text dump, one line per node: ``name = Op(inputs) -> outputs {attrs}``."""
    lines = [f"graph {graph.name}"]
    lines += [f"  input {s.name}: {s}" for s in graph.inputs]
    lines += [f"  const {k}: {graph.spec(k)}" for k in graph.constants]
    for n in graph.nodes:
        outs = ", ".join(f"{o}: {graph.spec(o)}" for o in n.outputs)
        attrs = f" {n.attrs}" if n.attrs else ""
        lines.append(f"  {n.name} = {n.op.value}({', '.join(n.inputs)}) -> {outs}{attrs}")
    lines.append(f"  return {', '.join(graph.outputs)}")
    return "\n".join(lines)
