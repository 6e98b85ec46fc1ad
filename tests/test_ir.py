"""The graph IR: construction, verification, text dump, JSON round trip, passes."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from codl.errors import GraphError
from codl.frontends import from_torch
from codl.ir import DType, Graph, Node, OpKind, TensorSpec, format_graph, infer_node, verify_graph
from codl.processors import Processor
from codl.runtime import ReferenceRunner


def tiny_graph() -> Graph:
    g = Graph("tiny", [TensorSpec("x", (1, 3, 8, 8), DType.FLOAT32)])
    g.constants["w"] = np.random.default_rng(0).standard_normal((4, 3, 3, 3)).astype(np.float32)
    conv = Node("conv", OpKind.CONV, ["x", "w"], ["y"],
                {"kernel": [3, 3], "strides": [1, 1], "pads": [1, 1, 1, 1], "dilations": [1, 1], "group": 1})
    g.add_node(conv, infer_node(g, conv))
    relu = Node("relu", OpKind.RELU, ["y"], ["z"])
    g.add_node(relu, infer_node(g, relu))
    g.outputs = ["z"]
    return g


def test_hand_built_graph_infers_and_verifies() -> None:
    g = tiny_graph()
    verify_graph(g)
    assert g.spec("z") == TensorSpec("z", (1, 4, 8, 8), DType.FLOAT32)
    assert g.num_parameters == 4 * 3 * 3 * 3


def test_verify_reports_every_problem() -> None:
    g = tiny_graph()
    g.nodes.reverse()  # relu now reads y before conv writes it
    g.outputs.append("nowhere")
    with pytest.raises(GraphError) as info:
        verify_graph(g)
    text = str(info.value)
    assert "'relu' (Relu): inputs ['y'] are not produced earlier" in text
    assert "graph output 'nowhere' is never produced" in text


def test_verify_catches_wrong_recorded_shape() -> None:
    g = tiny_graph()
    g.specs["y"] = TensorSpec("y", (1, 4, 9, 9), DType.FLOAT32)
    with pytest.raises(GraphError, match="recorded as float32\\[1x4x9x9\\] but infers as float32\\[1x4x8x8\\]"):
        verify_graph(g)


def test_shape_inference_rejects_mismatched_weights() -> None:
    g = tiny_graph()
    g.constants["w"] = np.zeros((4, 5, 3, 3), np.float32)
    with pytest.raises(GraphError, match="'conv' \\(Conv\\): input .* and weight .* disagree with group=1"):
        verify_graph(g)


def test_text_dump_names_every_node() -> None:
    text = format_graph(tiny_graph())
    assert "conv = Conv(x, w) -> y: float32[1x4x8x8]" in text
    assert "relu = Relu(y) -> z: float32[1x4x8x8]" in text
    assert text.strip().endswith("return z")


def test_json_round_trip_keeps_structure_and_runs_with_constants() -> None:
    module = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 16, 4)).eval()
    x = torch.randn(1, 3, 4, 4)
    g = from_torch(module, x, "seq")
    text = json.dumps(g.to_json())
    back = Graph.from_json(json.loads(text), constants=g.constants)
    assert back.to_json() == g.to_json()
    verify_graph(back)
    cpu = Processor.parse("cpu")
    torch.testing.assert_close(ReferenceRunner(back, cpu)(x)[0], ReferenceRunner(g, cpu)(x)[0])
    structure_only = Graph.from_json(json.loads(text))
    verify_graph(structure_only)
    assert {k: v.shape for k, v in structure_only.constants.items()} == {k: v.shape for k, v in g.constants.items()}


def test_batchnorm_is_folded_into_conv() -> None:
    module = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8)).eval()
    with torch.no_grad():
        module[1].running_mean.uniform_(-1, 1)
        module[1].running_var.uniform_(0.5, 2)
    g = from_torch(module, torch.randn(1, 3, 5, 5), "convbn")
    assert [n.op for n in g.nodes] == [OpKind.CONV]


def test_unknown_node_name_lookup_fails_clearly() -> None:
    with pytest.raises(KeyError, match="no node named 'nope'"):
        tiny_graph().node("nope")
