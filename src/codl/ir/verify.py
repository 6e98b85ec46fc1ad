"""Shape inference for one node, and ``verify_graph``: the checks every transformation
of a graph must pass."""

from __future__ import annotations

from ..errors import GraphError
from .graph import Graph, Node, TensorSpec


def infer_node(graph: Graph, node: Node) -> list[TensorSpec]:
    """Output specs of ``node`` from the specs of its inputs in ``graph``."""
    from ..ops import family  # the registry imports the IR, not the other way round

    impl = family(node.op)
    ins = [graph.spec(i) for i in node.inputs]
    shapes = impl.infer(node, ins)
    if len(shapes) != len(node.outputs):
        raise GraphError(f"node {node.name!r} ({node.op.value}) has {len(node.outputs)} outputs "
                         f"but its op produces {len(shapes)}")
    return [TensorSpec(name, tuple(int(d) for d in shape), dtype)
            for name, (shape, dtype) in zip(node.outputs, shapes)]


def verify_graph(graph: Graph) -> None:
    """Raise :class:`GraphError` listing every problem found: duplicate names, tensors
    used before they are produced (order is not topological), unknown ops, specs that
    disagree with shape inference, undefined outputs."""
    problems: list[str] = []
    defined = {s.name for s in graph.inputs} | set(graph.constants)
    clash = {s.name for s in graph.inputs} & set(graph.constants)
    problems += [f"tensor {n!r} is both a graph input and a constant" for n in sorted(clash)]
    names: set[str] = set()
    for node in graph.nodes:
        where = f"node {node.name!r} ({node.op.value})"
        if node.name in names:
            problems.append(f"{where}: duplicate node name")
        names.add(node.name)
        missing = [i for i in node.inputs if i not in defined]
        if missing:
            problems.append(f"{where}: inputs {missing} are not produced earlier")
            continue
        for out in node.outputs:
            if out in defined:
                problems.append(f"{where}: output {out!r} is already defined")
        try:
            inferred = infer_node(graph, node)
        except GraphError as e:
            problems.append(str(e))
            inferred = []
        for spec in inferred:
            recorded = graph.specs.get(spec.name)
            if recorded != spec:
                problems.append(f"{where}: output {spec.name!r} recorded as {recorded} but infers as {spec}")
        defined.update(node.outputs)
    for out in graph.outputs:
        if out not in defined:
            problems.append(f"graph output {out!r} is never produced")
    if not graph.outputs:
        problems.append("graph has no outputs")
    if problems:
        raise GraphError(f"graph {graph.name!r} is invalid:\n  " + "\n  ".join(problems))
