"""Mutation fuzzing of ONNX files: built-in models exported to ONNX, then one random
change each (an attribute's value or length, a float attribute made NaN or infinite, an
input renamed, an initializer's dims or bytes, a graph input's shape or type, an op type,
a node or attribute removed, the opset). Each mutant must either be refused with a
one-line CodlError or import into a graph that runs whole on the CPU with the shapes
shape inference gave, matches onnxruntime wherever onnxruntime also accepts the file,
and co-executes on the CPU pair with a random plan to the same outputs. Nothing may
raise another exception or hang. The counts per outcome are in
docs/results/reliability.md.
"""

from __future__ import annotations

import collections
import random
import signal
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

onnx = pytest.importorskip("onnx")

from codl import zoo  # noqa: E402
from codl.errors import CodlError  # noqa: E402
from codl.frontends import export_onnx, load_onnx  # noqa: E402
from codl.plan import random_plan  # noqa: E402
from codl.processors import Processor  # noqa: E402
from codl.runtime.reference import ReferenceRunner, random_inputs  # noqa: E402
from codl.runtime.session import compile  # noqa: E402

BASES = {"mobilenetv2": ((64, 64), 0.25), "fst": ((32, 32), 0.25), "vit": ((32, 32), 0.25)}
CASES_PER_MODEL = 80
LIMIT_S = 20  # per mutant: import, run, compare
INTS = [0, -1, -3, 1, 2, 3, 5, 17, 1 << 31 - 1, -(1 << 40)]
FLOATS = [float("nan"), float("inf"), -float("inf"), -1.0, 0.0, 1e30, 1e-30]
DIMS = [0, -1, 1, 2, 3, 7, 65, 10**6]
OPS = ["Conv", "Relu", "Add", "MaxPool", "Gemm", "Concat", "Reshape", "Softmax", "Transpose", "NoSuchOp", ""]
KINDS = ["int_attr", "ints_length", "float_attr", "input_name", "init_dims", "init_bytes", "input_dim",
         "elem_type", "op_type", "drop_node", "drop_attr", "opset"]


def mutate(data: bytes, rng: random.Random) -> tuple[bytes, str]:
    """One random change to the model ``data``; returns the new bytes and what changed."""
    m = onnx.ModelProto()
    m.ParseFromString(data)
    g = m.graph
    kind = rng.choice(KINDS)
    node = rng.choice(list(g.node))
    A = onnx.AttributeProto
    if kind in ("int_attr", "ints_length", "float_attr", "drop_attr"):
        want = {"int_attr": (A.INT, A.INTS), "ints_length": (A.INTS,), "float_attr": (A.FLOAT,),
                "drop_attr": tuple(range(20))}[kind]
        attrs = [(n, a) for n in g.node for a in n.attribute if a.type in want]
        if not attrs:
            return mutate(data, rng)
        node, attr = rng.choice(attrs)
        if kind == "drop_attr":
            node.attribute.remove(attr)
        elif kind == "float_attr":
            attr.f = rng.choice(FLOATS)
        elif kind == "ints_length":
            if attr.ints and rng.random() < 0.5:
                attr.ints.pop()
            else:
                attr.ints.append(rng.choice(INTS))
        elif attr.type == A.INT:
            attr.i = rng.choice(INTS)
        elif attr.ints:
            attr.ints[rng.randrange(len(attr.ints))] = rng.choice(INTS)
        return m.SerializeToString(), f"{kind} {attr.name} of {node.op_type} {node.name}"
    if kind == "input_name" and node.input:
        names = [i.name for i in g.input] + [t.name for t in g.initializer] + [o for n in g.node for o in n.output]
        i = rng.randrange(len(node.input))
        node.input[i] = rng.choice(names + ["no_such_tensor", ""])
        return m.SerializeToString(), f"{kind} {i} of {node.op_type} {node.name} -> {node.input[i]!r}"
    if kind in ("init_dims", "init_bytes") and g.initializer:
        init = rng.choice(list(g.initializer))
        if kind == "init_dims" and init.dims:
            init.dims[rng.randrange(len(init.dims))] = rng.choice(DIMS)
        elif init.raw_data:
            init.raw_data = init.raw_data[: rng.randrange(len(init.raw_data))]
        else:
            init.data_type = rng.randrange(0, 25)
        return m.SerializeToString(), f"{kind} of {init.name}"
    if kind in ("input_dim", "elem_type"):
        tt = g.input[0].type.tensor_type
        if kind == "elem_type":
            tt.elem_type = rng.randrange(0, 25)
        else:
            d = tt.shape.dim[rng.randrange(len(tt.shape.dim))]
            if rng.random() < 0.2:
                d.dim_param = "n"
            else:
                d.dim_value = rng.choice(DIMS)
        return m.SerializeToString(), f"{kind} of input {g.input[0].name}"
    if kind == "op_type":
        old, node.op_type = node.op_type, rng.choice(OPS)
        return m.SerializeToString(), f"op_type of {node.name}: {old} -> {node.op_type}"
    if kind == "drop_node":
        g.node.remove(node)
        return m.SerializeToString(), f"drop_node {node.op_type} {node.name}"
    m.opset_import[0].version = rng.choice([1, 6, 9, 13, 21, 99])
    return m.SerializeToString(), f"opset {m.opset_import[0].version}"


class TimeLimit(Exception):
    pass


def _alarm(signum: int, frame: Any) -> None:
    raise TimeLimit


def worst(a: torch.Tensor, b: torch.Tensor, where: torch.Tensor) -> float:
    """The largest |a - b| where ``where`` holds (0 where it never does)."""
    return float((a - b)[where].abs().max()) if where.any() else 0.0


def check_mutant(path: Path, seed: int) -> str:
    """The outcome of one mutant (see the module docstring); raises on a failure."""
    try:
        graph = load_onnx(path)
    except CodlError as e:
        assert "\n" not in str(e).strip(), f"a multi-line error: {e}"
        return "refused at import"
    inputs = random_inputs(graph, seed)
    cpu = Processor.parse("cpu")
    try:
        ours = [t.float() for t in ReferenceRunner(graph, cpu)(*inputs)]
    except CodlError:
        return "refused at run"
    for name, t in zip(graph.outputs, ours):
        assert tuple(t.shape) == tuple(graph.spec(name).shape), f"{name}: ran {tuple(t.shape)}, inferred {graph.spec(name).shape}"
    import onnxruntime as ort

    outcome = "accepted, onnxruntime refused"
    try:
        sess = ort.InferenceSession(path.read_bytes(), providers=["CPUExecutionProvider"])
        feeds = {i.name: x.numpy() for i, x in zip(sess.get_inputs(), inputs)}
        theirs = sess.run(None, feeds)
    except Exception:  # noqa: BLE001 - onnxruntime's refusal is an outcome, not a failure
        theirs = None
    if theirs is not None:
        for name, a, b in zip(graph.outputs, ours, theirs):
            b = torch.from_numpy(np.asarray(b)).float()
            assert a.shape == b.shape, f"{name}: codl {tuple(a.shape)}, onnxruntime {tuple(b.shape)}"
            both = torch.isfinite(a) & torch.isfinite(b)
            assert torch.equal(torch.isfinite(a), torch.isfinite(b)), f"{name}: non-finite values differ"
            scale = float(b[both].abs().max()) if both.any() else 0.0
            assert worst(a, b, both) <= 1e-3 * max(scale, 1.0), f"{name}: differs from onnxruntime"
        outcome = "accepted, matches onnxruntime"
    one = Processor.parse("cpu", threads=1)
    got = compile(graph, random_plan(graph, seed), (one, one))(*inputs)
    for name, a, b in zip(graph.outputs, got, ours):
        same = torch.isfinite(b)
        assert torch.equal(torch.isfinite(a.float()), same), f"{name}: co-executed non-finite values differ"
        scale = float(b[same].abs().max()) if same.any() else 0.0
        assert worst(a.float(), b, same) <= 1e-4 * max(scale, 1.0), f"{name}: co-executed differs"
    return outcome


@pytest.mark.parametrize("name", list(BASES))
def test_mutated_onnx_files_are_refused_in_one_line_or_run_right(name: str, tmp_path: Path) -> None:
    size, width = BASES[name]
    module, x = zoo.build(name, size, width=width)
    data = export_onnx(module, x)
    rng = random.Random(name)
    counts: collections.Counter = collections.Counter()
    previous = signal.signal(signal.SIGALRM, _alarm)
    try:
        for case in range(CASES_PER_MODEL):
            mutant, what = mutate(data, rng)
            path = tmp_path / f"m{case}.onnx"
            path.write_bytes(mutant)
            signal.alarm(LIMIT_S)
            try:
                counts[check_mutant(path, case)] += 1
            except TimeLimit:
                pytest.fail(f"{name} mutant {case} ({what}): no answer within {LIMIT_S} s")
            except AssertionError as e:
                pytest.fail(f"{name} mutant {case} ({what}): {e}")
            except Exception as e:  # noqa: BLE001 - any other exception is the failure under test
                pytest.fail(f"{name} mutant {case} ({what}): {type(e).__name__}: {str(e)[:300]}")
            finally:
                signal.alarm(0)
    finally:
        signal.signal(signal.SIGALRM, previous)
    print(f"{name}: {CASES_PER_MODEL} mutants: {dict(counts)}")
    assert sum(counts.values()) == CASES_PER_MODEL
