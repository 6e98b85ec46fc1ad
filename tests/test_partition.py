"""Partitioned operators equal unpartitioned ones: property tests over random operator
parameters, partition dimensions and ratios, plus exact halo arithmetic."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import example, given, settings
from hypothesis import strategies as st

from codl.ir import DType, Graph, Node, OpKind, TensorSpec, infer_node
from codl.ir.regions import Dim, conv_rows, full_box, relative, split_point, with_axis
from codl.ops import family

SETTINGS = settings(max_examples=60, deadline=None)


def single_node_graph(op: OpKind, x_shape: tuple[int, ...], attrs: dict, consts: dict[str, np.ndarray],
                      extra_inputs: tuple[tuple[int, ...], ...] = ()) -> Graph:
    inputs = [TensorSpec("x", x_shape, DType.FLOAT32)] + [TensorSpec(f"x{i}", s, DType.FLOAT32) for i, s in enumerate(extra_inputs)]
    g = Graph("one", inputs)
    g.constants.update(consts)
    node = Node("n", op, [s.name for s in inputs] + list(consts), ["y"], attrs)
    g.add_node(node, infer_node(g, node))
    g.outputs = ["y"]
    return g


def check_split(g: Graph, dim: Dim, rho: float, seed: int = 0) -> None:
    """Compute the output in two parts (first processor, second processor) from sliced
    inputs and compare with the whole op."""
    node = g.nodes[0]
    fam = family(node.op)
    ins = [g.spec(i) for i in node.inputs]
    out = g.spec("y")
    axis = fam.split_axes(node, ins, out)[dim]
    gen = torch.Generator().manual_seed(seed)
    values = [torch.from_numpy(g.constants[i]) if g.is_constant(i) else torch.randn(g.spec(i).shape, generator=gen)
              for i in node.inputs]
    whole = fam.kernel(node)(*values)
    point = split_point(out.shape[axis], rho, fam.alignment(node, ins, dim))
    for start, end in ((0, point), (point, out.shape[axis])):
        if end <= start:
            continue
        box = with_axis(full_box(out.shape), axis, start, end)
        in_boxes = fam.input_boxes(node, ins, out, box)
        parts = [v[relative(b, full_box(v.shape))] for v, b in zip(values, in_boxes)]
        got = fam.partial_kernel(node, ins, out, box)(*parts)
        torch.testing.assert_close(got, whole[relative(box, full_box(out.shape))], rtol=1e-5, atol=1e-5)


rhos = st.sampled_from([0.0, 0.1, 0.25, 0.3, 0.5, 0.7, 0.9, 1.0]) | st.floats(0, 1)


@SETTINGS
@given(h=st.integers(1, 13), w=st.integers(1, 9), k=st.integers(1, 5), s=st.integers(1, 3), d=st.integers(1, 2),
       pads=st.tuples(*[st.integers(0, 3)] * 4), groups=st.sampled_from([1, 2, 4]), cpg=st.integers(1, 3),
       dim=st.sampled_from(list(Dim)), rho=rhos, bias=st.booleans())
@example(h=1, w=1, k=1, s=1, d=1, pads=(0, 0, 1, 0), groups=1, cpg=1, dim=Dim.H, rho=0.3, bias=False)  # a share of padding only
def test_conv_split(h, w, k, s, d, pads, groups, cpg, dim, rho, bias) -> None:  # noqa: ANN001
    cin, cout = groups * 2, groups * cpg
    if h + pads[0] + pads[2] < d * (k - 1) + 1 or w + pads[1] + pads[3] < d * (k - 1) + 1:
        return  # empty output
    rng = np.random.default_rng(1)
    consts = {"w": rng.standard_normal((cout, cin // groups, k, k)).astype(np.float32)}
    if bias:
        consts["b"] = rng.standard_normal(cout).astype(np.float32)
    attrs = {"kernel": [k, k], "strides": [s, s], "pads": list(pads), "dilations": [d, d], "group": groups}
    check_split(single_node_graph(OpKind.CONV, (1, cin, h, w), attrs, consts), dim, rho)


@SETTINGS
@given(h=st.integers(1, 13), w=st.integers(1, 9), k=st.integers(1, 5), s=st.integers(1, 3), d=st.integers(1, 2),
       pads=st.tuples(*[st.integers(0, 3)] * 4), groups=st.sampled_from([1, 2]), channels_last=st.booleans())
@example(h=0, w=1, k=1, s=1, d=1, pads=(0, 0, 1, 0), groups=1, channels_last=False)  # a share of padding only
@example(h=3, w=1, k=1, s=2, d=2, pads=(0, 1, 0, 1), groups=2, channels_last=True)  # crashed PyTorch 2.13's CPU conv
def test_conv_with_uneven_padding_matches_padded_copy(h, w, k, s, d, pads, groups, channels_last) -> None:  # noqa: ANN001
    """The conv kernel pads unevenly without copying its input where it can (symmetric
    pads, surplus output dropped): the same result as convolving a padded copy."""
    import torch.nn.functional as F

    from codl.ops.conv import symmetric_padding

    if h + pads[0] + pads[2] < d * (k - 1) + 1 or w + pads[1] + pads[3] < d * (k - 1) + 1:
        return  # empty output
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(1, 2 * groups, h, w, generator=gen)
    x = x.contiguous(memory_format=torch.channels_last) if channels_last else x
    wt, b = torch.randn(3 * groups, 2, k, k, generator=gen), torch.randn(3 * groups, generator=gen)
    attrs = {"kernel": [k, k], "strides": [s, s], "pads": list(pads), "dilations": [d, d], "group": groups}
    node = Node("n", OpKind.CONV, ["x", "w", "b"], ["y"], attrs)
    got = family(OpKind.CONV).kernel(node)(x, wt, b)
    want = F.conv2d(F.pad(x, (pads[1], pads[3], pads[0], pads[2])), wt, b, s, 0, d, groups)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    sym = symmetric_padding(pads, (s, s))
    if pads[0] >= pads[2] and pads[1] >= pads[3]:  # padding added at the end only: always symmetric
        assert sym is not None and sym[1] == (0, 0)


@SETTINGS
@given(h=st.integers(1, 9), w=st.integers(1, 7), k=st.integers(1, 5), s=st.integers(1, 3), d=st.integers(1, 2),
       pads=st.tuples(*[st.integers(0, 2)] * 4), opad=st.integers(0, 2), groups=st.sampled_from([1, 2]),
       cpg=st.integers(1, 3), dim=st.sampled_from(list(Dim)), rho=rhos, bias=st.booleans())
def test_conv_transpose_split(h, w, k, s, d, pads, opad, groups, cpg, dim, rho, bias) -> None:  # noqa: ANN001
    if opad >= max(s, d):
        opad = 0  # output padding must be smaller than the stride or the dilation
    cin, cout = groups * 2, groups * cpg
    rng = np.random.default_rng(4)
    consts = {"w": rng.standard_normal((cin, cout // groups, k, k)).astype(np.float32)}
    if bias:
        consts["b"] = rng.standard_normal(cout).astype(np.float32)
    attrs = {"kernel": [k, k], "strides": [s, s], "pads": list(pads), "dilations": [d, d], "group": groups,
             "output_padding": [opad, opad]}
    full = [(n - 1) * s + (k - 1) * d + 1 + opad for n in (h, w)]
    if full[0] - pads[0] - pads[2] <= 0 or full[1] - pads[1] - pads[3] <= 0:
        return
    check_split(single_node_graph(OpKind.CONV_TRANSPOSE, (1, cin, h, w), attrs, consts), dim, rho)


@SETTINGS
@given(h=st.integers(2, 14), w=st.integers(2, 9), k=st.integers(1, 4), s=st.integers(1, 3),
       p=st.integers(0, 1), ceil=st.integers(0, 1), dim=st.sampled_from(list(Dim)), rho=rhos,
       op=st.sampled_from([OpKind.MAX_POOL, OpKind.AVG_POOL, OpKind.GLOBAL_AVG_POOL]))
def test_pool_split(h, w, k, s, p, ceil, dim, rho, op) -> None:  # noqa: ANN001
    if 2 * p > k or h + 2 * p < k or w + 2 * p < k:
        return
    attrs = {} if op is OpKind.GLOBAL_AVG_POOL else {"kernel": [k, k], "strides": [s, s], "pads": [p] * 4,
                                                       "dilations": [1, 1], "ceil_mode": ceil}
    if op is OpKind.AVG_POOL:
        attrs.update(count_include_pad=0)
        del attrs["dilations"]
    g = single_node_graph(op, (1, 3, h, w), attrs, {})
    node = g.nodes[0]
    if dim not in family(op).split_axes(node, [g.spec("x")], g.spec("y")):
        assert op is not OpKind.MAX_POOL  # max pooling always splits on both
        return
    check_split(g, dim, rho)


@SETTINGS
@given(rows=st.integers(1, 9), fin=st.integers(1, 8), fout=st.integers(1, 12), batch=st.integers(1, 3),
       dim=st.sampled_from(list(Dim)), rho=rhos, bias=st.booleans())
def test_linear_split(rows, fin, fout, batch, dim, rho, bias) -> None:  # noqa: ANN001
    rng = np.random.default_rng(2)
    consts = {"w": rng.standard_normal((fout, fin)).astype(np.float32)}
    if bias:
        consts["b"] = rng.standard_normal(fout).astype(np.float32)
    check_split(single_node_graph(OpKind.LINEAR, (batch, rows, fin), {}, consts), dim, rho)


@SETTINGS
@given(m=st.integers(1, 7), k=st.integers(1, 5), n=st.integers(1, 7), heads=st.integers(1, 3),
       dim=st.sampled_from(list(Dim)), rho=rhos)
def test_matmul_split(m, k, n, heads, dim, rho) -> None:  # noqa: ANN001
    check_split(single_node_graph(OpKind.MATMUL, (1, heads, m, k), {}, {}, extra_inputs=((1, heads, k, n),)), dim, rho)


@pytest.mark.parametrize("op,attrs,dim", [
    (OpKind.RELU, {}, Dim.H), (OpKind.SIGMOID, {}, Dim.OC), (OpKind.CLIP, {"min": 0.0, "max": 6.0}, Dim.H),
    (OpKind.SOFTMAX, {"axis": 3}, Dim.H), (OpKind.BATCH_NORM, {"epsilon": 1e-5}, Dim.H),
    (OpKind.INSTANCE_NORM, {"epsilon": 1e-5}, Dim.OC),
    (OpKind.RESIZE, {"mode": "nearest", "align_corners": 0, "size": [14, 10], "scales": [2.0, 2.0]}, Dim.H),
    (OpKind.RESIZE, {"mode": "linear", "align_corners": 0, "size": [14, 10], "scales": [2.0, 2.0]}, Dim.OC),
    (OpKind.PAD, {"pads": [0, 0, 1, 2, 0, 0, 2, 1], "mode": "reflect", "value": 0.0}, Dim.OC),
])
@pytest.mark.parametrize("rho", [0.3, 0.5, 0.8])
def test_other_splits(op: OpKind, attrs: dict, dim: Dim, rho: float) -> None:
    rng = np.random.default_rng(3)
    consts = {}
    if op is OpKind.BATCH_NORM:
        consts = {k: rng.uniform(0.5, 1.5, 6).astype(np.float32) for k in ("s", "b", "m", "v")}
    if op is OpKind.INSTANCE_NORM:
        consts = {k: rng.uniform(0.5, 1.5, 6).astype(np.float32) for k in ("s", "b")}
    check_split(single_node_graph(op, (1, 6, 7, 5), attrs, consts), dim, rho)


def test_binary_split_with_broadcast_operand() -> None:
    g = single_node_graph(OpKind.MUL, (2, 6, 5, 4), {}, {"c": np.arange(6, dtype=np.float32).reshape(6, 1, 1)})
    for dim in Dim:
        check_split(g, dim, 0.5)


def test_concat_split_off_axis() -> None:
    g = single_node_graph(OpKind.CONCAT, (1, 3, 5, 4), {"axis": 1}, {}, extra_inputs=((1, 2, 5, 4),))
    assert set(family(OpKind.CONCAT).split_axes(g.nodes[0], [g.spec("x"), g.spec("x0")], g.spec("y"))) == {Dim.H}
    check_split(g, Dim.H, 0.4)


@given(size=st.integers(1, 40), k=st.integers(1, 9), s=st.integers(1, 4), p=st.integers(0, 4), d=st.integers(1, 3),
       data=st.data())
def test_conv_rows_matches_brute_force(size, k, s, p, d, data) -> None:  # noqa: ANN001
    out = (size + 2 * p - d * (k - 1) - 1) // s + 1
    if out <= 0:
        return
    start = data.draw(st.integers(0, out - 1))
    end = data.draw(st.integers(start + 1, out))
    lo, hi, pad_lo, pad_hi = conv_rows(start, end, k, s, p, d, size)
    touched = {r * s - p + i * d for r in range(start, end) for i in range(k)}
    inside = sorted(t for t in touched if 0 <= t < size)
    assert all(lo <= t < hi for t in inside)  # every row a window reads is in the slice
    span = (end - start - 1) * s + (k - 1) * d + 1
    assert pad_lo == min(max(0, p - start * s), span) and pad_lo + (hi - lo) + pad_hi == span


@given(size=st.integers(1, 500), rho=st.floats(0, 1), align=st.sampled_from([1, 4, 8]))
def test_split_point(size, rho, align) -> None:  # noqa: ANN001
    point = split_point(size, rho, align)
    assert 0 <= point <= size
    assert (size - point) % align == 0 or point == 0
    assert abs((size - point) - rho * size) <= align / 2 + 1e-9 or point == 0


def _wild_plan(graph, seed: int):  # noqa: ANN001, ANN202
    """Any dimension and share per node (supported or not) and chains of any consecutive
    nodes: plans a user might write by hand."""
    import random as _random

    from codl.ir.regions import Dim
    from codl.plan import Placement, Plan, split_dims

    rng = _random.Random(seed)
    plan = Plan(graph.name, {})
    for n in graph.nodes:  # mostly a supported dimension, sometimes any
        dims = split_dims(graph, n.name)
        dim = rng.choice(dims) if dims and rng.random() < 0.97 else rng.choice([Dim.OC, Dim.H])
        whole = not dims and rng.random() < 0.97
        plan.placements[n.name] = Placement(dim, rng.choice([0.0, 1.0] if whole else
                                                            [0.0, 1.0, 0.1, 0.3, 0.5, 0.77, 0.9, rng.random()]))
    names = [n.name for n in graph.nodes]
    for _ in range(rng.choice([0, 0, 1, 2])):
        i = rng.randrange(len(names) - 1)
        chain = names[i:i + rng.randint(2, 4)]
        for n in chain:
            plan.placements[n] = plan.placements[chain[0]]
        plan.chains.append(chain)
    return plan


@pytest.mark.parametrize("name", ["mobilenetv2", "resnet50"])
def test_every_plan_verify_accepts_compiles_and_runs_correctly(name: str) -> None:
    """verify_plan rejects everything compile would: over wild plans on models with
    grouped and depthwise convs, a plan that verifies compiles and matches the reference."""
    from codl import zoo
    from codl.frontends import from_torch
    from codl.plan import PlanError, verify_plan
    from codl.processors import Processor
    from codl.runtime import ReferenceRunner
    from codl.runtime.session import compile

    module, x = zoo.build(name, (32, 32), width=0.25)
    graph = from_torch(module, x, name=name)
    expected = ReferenceRunner(graph, Processor.parse("cpu"))(x)[0]
    pair = (Processor.parse("cpu", threads=1), Processor.parse("cpu", threads=1))
    accepted = 0
    for seed in range(120):
        plan = _wild_plan(graph, seed)
        try:
            verify_plan(plan, graph)
        except PlanError:
            continue
        accepted += 1
        with compile(graph, plan, pair) as session:
            got = session(x)[0]
        assert float((got - expected).abs().max() / expected.abs().max()) < 1e-4, f"seed {seed}"
    assert accepted >= 60  # most drawn plans are valid (94 and 96 of 120 when written); the rest are refused
