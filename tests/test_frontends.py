"""Frontends: same Graph from a module and from its ONNX file; clear errors for bad
files and unsupported operators."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper
from torch import nn

from codl.errors import GraphError, ModelLoadError, UnsupportedOperatorError
from codl.frontends import export_onnx, from_torch, load_onnx


def small_net() -> tuple[nn.Module, torch.Tensor]:
    torch.manual_seed(0)
    m = nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1), nn.BatchNorm2d(8), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                      nn.Flatten(), nn.Linear(8, 3)).eval()
    return m, torch.randn(1, 3, 16, 16)


def test_module_and_onnx_file_give_the_same_graph(tmp_path: Path) -> None:
    m, x = small_net()
    path = tmp_path / "net.onnx"
    path.write_bytes(export_onnx(m, x))
    a, b = from_torch(m, x, name="net"), load_onnx(path)
    assert a.to_json() == b.to_json()
    assert a.constants.keys() == b.constants.keys()
    for k in a.constants:
        assert (a.constants[k] == b.constants[k]).all()


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="cannot read"):
        load_onnx(tmp_path / "absent.onnx")


def test_empty_file(tmp_path: Path) -> None:
    (tmp_path / "e.onnx").write_bytes(b"")
    with pytest.raises(ModelLoadError, match="empty"):
        load_onnx(tmp_path / "e.onnx")


def test_truncated_file(tmp_path: Path) -> None:
    m, x = small_net()
    data = export_onnx(m, x)
    (tmp_path / "t.onnx").write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelLoadError) as info:
        load_onnx(tmp_path / "t.onnx")
    assert "\n" not in str(info.value)
    assert "not a valid ONNX model" in str(info.value) or "inconsistent" in str(info.value)


def test_non_onnx_file(tmp_path: Path) -> None:
    (tmp_path / "x.onnx").write_text("this is a text file, not a protobuf\n" * 20)
    with pytest.raises(ModelLoadError, match="not a valid ONNX model"):
        load_onnx(tmp_path / "x.onnx")


def _model(nodes: list, inputs: list, outputs: list, opset: int = 17) -> onnx.ModelProto:
    g = helper.make_graph(nodes, "g", inputs, outputs)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)], ir_version=8)


def _vi(name: str, shape: list) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)


def test_inconsistent_file(tmp_path: Path) -> None:
    # A node reads a tensor nobody defines: the checker rejects the graph.
    model = _model([helper.make_node("Relu", ["ghost"], ["y"])], [_vi("x", [1, 4])], [_vi("y", [1, 4])])
    (tmp_path / "bad.onnx").write_bytes(model.SerializeToString())
    with pytest.raises(ModelLoadError, match="inconsistent ONNX model") as info:
        load_onnx(tmp_path / "bad.onnx")
    assert "\n" not in str(info.value)


def test_old_opset_is_refused(tmp_path: Path) -> None:
    model = _model([helper.make_node("Relu", ["x"], ["y"])], [_vi("x", [1, 4])], [_vi("y", [1, 4])], opset=9)
    (tmp_path / "old.onnx").write_bytes(model.SerializeToString())
    with pytest.raises(ModelLoadError, match="opset 9 is not supported; codl reads opset 13 and newer"):
        load_onnx(tmp_path / "old.onnx")


def test_unsupported_ops_are_all_named_with_the_supported_list(tmp_path: Path) -> None:
    nodes = [helper.make_node("Relu", ["x"], ["a"], name="ok"),
             helper.make_node("Hardmax", ["a"], ["b"], name="first_bad"),
             helper.make_node("Relu", ["b"], ["c"], name="after_bad"),
             helper.make_node("LpNormalization", ["x"], ["d"], name="second_bad"),
             helper.make_node("Add", ["c", "d"], ["y"], name="join")]
    model = _model(nodes, [_vi("x", [2, 4])], [_vi("y", [2, 4])])
    (tmp_path / "u.onnx").write_bytes(model.SerializeToString())
    with pytest.raises(UnsupportedOperatorError) as info:
        load_onnx(tmp_path / "u.onnx")
    text = str(info.value)
    assert "2 unsupported node(s): first_bad (Hardmax); second_bad (LpNormalization)" in text
    assert "after_bad" not in text  # downstream of an unsupported node: not reported twice
    assert "Supported op types: Abs, Add," in text and "Conv" in text


def test_symbolic_input_needs_a_shape(tmp_path: Path) -> None:
    model = _model([helper.make_node("Relu", ["x"], ["y"])], [_vi("x", ["batch", 4])], [_vi("y", ["batch", 4])])
    path = tmp_path / "sym.onnx"
    path.write_bytes(model.SerializeToString())
    with pytest.raises(GraphError, match="input 'x' has a symbolic or unknown shape \\['batch', 4\\]"):
        load_onnx(path)
    g = load_onnx(path, {"x": (3, 4)})
    assert g.spec("y").shape == (3, 4)
    with pytest.raises(GraphError, match="input_shapes names \\['z'\\]"):
        load_onnx(path, {"z": (3, 4)})


def test_runtime_shape_arithmetic_is_folded() -> None:
    class Net(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x.view(x.size(0), -1, 2).mean(-1) + x.new_ones(x.shape[0], 1)

    g = from_torch(Net(), torch.randn(3, 4, 2), "fold")
    assert {n.op.value for n in g.nodes} <= {"Reshape", "ReduceMean", "Add"}


def _bad_onnx(case: str):  # noqa: ANN202
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    def out(t: int = TensorProto.FLOAT) -> object:
        return helper.make_tensor_value_info("y", t, ["a", "b", "c", "d"])

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])
    if case.startswith("conv"):
        attrs = {"conv zero strides": {"strides": [0, 0]}, "conv pads of length 2": {"pads": [1, 1]},
                 "conv negative pads": {"pads": [-1, -1, -1, -1]}, "conv zero dilations": {"dilations": [0, 0]}}[case]
        w = numpy_helper.from_array(np.ones((4, 3, 3, 3), np.float32), "w")
        graph = helper.make_graph([helper.make_node("Conv", ["x", "w"], ["y"], **attrs)], "g", [x], [out()], [w])
    elif case == "resize nan scale":
        inits = [numpy_helper.from_array(np.array([1, 1, np.nan, np.nan], np.float32), "s"),
                 numpy_helper.from_array(np.array([], np.float32), "roi")]
        graph = helper.make_graph([helper.make_node("Resize", ["x", "roi", "s"], ["y"], mode="nearest")], "g", [x],
                                  [out()], inits)
    elif case == "huge input":
        xi = helper.make_tensor_value_info("x", TensorProto.FLOAT, [100000, 100000])
        yo = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["a", "b"])
        graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g", [xi], [yo])
    else:
        t = {"string input": TensorProto.STRING, "complex input": TensorProto.COMPLEX64,
             "undefined input": TensorProto.UNDEFINED}[case]
        xi = helper.make_tensor_value_info("x", t, [1, 3, 8, 8])
        graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g", [xi], [out(t)])
    return helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 13)])


@pytest.mark.parametrize("case", ["conv zero strides", "conv pads of length 2", "conv negative pads",
                                  "conv zero dilations", "resize nan scale", "string input", "complex input",
                                  "undefined input", "huge input"])
def test_out_of_range_onnx_is_a_one_line_error_naming_the_node_or_input(case: str) -> None:
    from codl.errors import CodlError
    from codl.frontends import from_onnx_model

    with pytest.raises(CodlError) as err:
        from_onnx_model(_bad_onnx(case))
    text = str(err.value)
    assert "\n" not in text
    assert (("node" in text and ("Conv" in text or "Resize" in text)) or "input 'x' has element type" in text
            or "over codl's limit of 16 GiB" in text)
