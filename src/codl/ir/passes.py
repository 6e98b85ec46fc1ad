"""Graph simplifications run after import. Each keeps the graph's outputs bit-for-bit
meaningfully equal (up to float rounding) and leaves a graph that ``verify_graph`` accepts.

- ``fold_batchnorm``: BatchNorm after a conv (its only consumer) folds into the conv's
  weight and bias, as inference engines do;
- ``fuse_linear_bias``: Linear without bias followed by an Add of a per-feature constant;
- ``fuse_gelu``: the erf form x * 0.5 * (1 + erf(x / sqrt 2)) that exporters emit;
- ``fuse_silu``: x * sigmoid(x);
- ``prune``: drop nodes whose outputs nobody reads, and unused constants.
"""

from __future__ import annotations

import math

import numpy as np

from .graph import Graph, Node, OpKind


def simplify(graph: Graph) -> Graph:
    fold_batchnorm(graph)
    fuse_linear_bias(graph)
    fuse_gelu(graph)
    fuse_silu(graph)
    prune(graph)
    return graph


def _sole_user(graph: Graph, tensor: str) -> Node | None:
    """The one node reading ``tensor`` if exactly one does and it is no graph output."""
    users = graph.consumers().get(tensor, [])
    if len(users) != 1 or tensor in graph.outputs:
        return None
    return users[0]


def _remove(graph: Graph, nodes: list[Node]) -> None:
    ids = {id(n) for n in nodes}
    graph.nodes = [n for n in graph.nodes if id(n) not in ids]
    for n in nodes:
        for out in n.outputs:
            graph.specs.pop(out, None)


def _const_other(graph: Graph, node: Node, tensor: str) -> np.ndarray | None:
    """For a binary node reading ``tensor``, the constant value of its other operand."""
    others = [i for i in node.inputs if i != tensor]
    if len(others) != 1 or not graph.is_constant(others[0]):
        return None
    return graph.constants[others[0]]


def fold_batchnorm(graph: Graph) -> None:
    producers = graph.producers()
    for bn in [n for n in graph.nodes if n.op is OpKind.BATCH_NORM]:
        conv = producers.get(bn.inputs[0])
        if conv is None or conv.op not in (OpKind.CONV, OpKind.CONV_TRANSPOSE):
            continue
        if _sole_user(graph, conv.outputs[0]) is not bn or not all(graph.is_constant(i) for i in bn.inputs[1:]):
            continue
        gamma, beta, mean, var = (graph.constants[i].astype(np.float64) for i in bn.inputs[1:5])
        scale = gamma / np.sqrt(var + bn.attrs["epsilon"])
        w = graph.constants[conv.inputs[1]].astype(np.float64)
        if conv.op is OpKind.CONV:
            w = w * scale[:, None, None, None]
        else:  # (IC, OC/g, kh, kw): output channel o = group * (OC/g) + j
            g = conv.attrs["group"]
            shaped = w.reshape(g, w.shape[0] // g, w.shape[1], *w.shape[2:])
            w = (shaped * scale.reshape(g, 1, -1, 1, 1)).reshape(w.shape)
        b = graph.constants[conv.inputs[2]].astype(np.float64) if len(conv.inputs) > 2 else np.zeros_like(scale)
        dtype = graph.constants[conv.inputs[1]].dtype
        w_name, b_name = f"{conv.name}.weight_bn", f"{conv.name}.bias_bn"
        graph.constants[w_name] = w.astype(dtype)
        graph.constants[b_name] = ((b - mean) * scale + beta).astype(dtype)
        conv.inputs = [conv.inputs[0], w_name, b_name]
        _absorb(graph, conv, bn)


def _absorb(graph: Graph, node: Node, follower: Node) -> None:
    """``node`` now also does ``follower``'s work: it takes over its outputs."""
    from .verify import infer_node

    graph.specs.pop(node.outputs[0], None)
    node.outputs = list(follower.outputs)
    _remove(graph, [follower])
    for spec in infer_node(graph, node):
        graph.specs[spec.name] = spec


def fuse_linear_bias(graph: Graph) -> None:
    for lin in [n for n in graph.nodes if n.op is OpKind.LINEAR and len(n.inputs) == 2]:
        add = _sole_user(graph, lin.outputs[0])
        if add is None or add.op is not OpKind.ADD:
            continue
        bias = _const_other(graph, add, lin.outputs[0])
        out_features = graph.constants[lin.inputs[1]].shape[0]
        if bias is None or bias.size != out_features or bias.shape[-1] != out_features:
            continue
        name = f"{lin.name}.bias"
        graph.constants[name] = bias.reshape(out_features).astype(graph.constants[lin.inputs[1]].dtype)
        lin.inputs.append(name)
        _absorb(graph, lin, add)


def _is_scalar(value: np.ndarray | None, target: float, tol: float = 1e-4) -> bool:
    return value is not None and value.size == 1 and abs(float(value.reshape(-1)[0]) - target) <= tol * abs(target)


def fuse_gelu(graph: Graph) -> None:
    producers = graph.producers()
    for erf in [n for n in graph.nodes if n.op is OpKind.ERF]:
        div = producers.get(erf.inputs[0])
        if div is None or div.op is not OpKind.DIV or _sole_user(graph, div.outputs[0]) is not erf:
            continue
        x = div.inputs[0]
        if not _is_scalar(_const_other(graph, div, x), math.sqrt(2.0)):
            continue
        add = _sole_user(graph, erf.outputs[0])
        if add is None or add.op is not OpKind.ADD or not _is_scalar(_const_other(graph, add, erf.outputs[0]), 1.0):
            continue
        mul1 = _sole_user(graph, add.outputs[0])
        if mul1 is None or mul1.op is not OpKind.MUL or sorted(mul1.inputs) != sorted([x, add.outputs[0]]):
            continue
        mul2 = _sole_user(graph, mul1.outputs[0])
        if mul2 is None or mul2.op is not OpKind.MUL or not _is_scalar(_const_other(graph, mul2, mul1.outputs[0]), 0.5):
            continue
        gelu = Node(f"{erf.name}.gelu", OpKind.GELU, [x], list(mul2.outputs), {"approximate": "none"})
        graph.nodes[graph.nodes.index(mul2)] = gelu
        _remove(graph, [div, erf, add, mul1])


def fuse_silu(graph: Graph) -> None:
    for sig in [n for n in graph.nodes if n.op is OpKind.SIGMOID]:
        mul = _sole_user(graph, sig.outputs[0])
        x = sig.inputs[0]
        if mul is None or mul.op is not OpKind.MUL or sorted(mul.inputs) != sorted([x, sig.outputs[0]]):
            continue
        graph.nodes[graph.nodes.index(mul)] = Node(f"{sig.name}.silu", OpKind.SILU, [x], list(mul.outputs), {})
        _remove(graph, [sig])


def prune(graph: Graph) -> None:
    live = set(graph.outputs)
    kept: list[Node] = []
    for node in reversed(graph.nodes):
        if any(o in live for o in node.outputs):
            kept.append(node)
            live.update(node.inputs)
        else:
            for out in node.outputs:
                graph.specs.pop(out, None)
    graph.nodes = kept[::-1]
    for name in [c for c in graph.constants if c not in live]:
        del graph.constants[name]
