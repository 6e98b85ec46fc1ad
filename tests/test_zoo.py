"""Every evaluation model, at a small size, imported from its nn.Module and from its ONNX
file, runs on the CPU and matches PyTorch."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from codl import zoo
from codl.errors import CodlError
from codl.frontends import export_onnx, from_torch, load_onnx
from codl.ir import OpKind, verify_graph
from codl.processors import Processor
from codl.runtime import ReferenceRunner

SMALL = {"fst": (48, 64), "posenet": (64, 64), "vit": (64, 64)}
FP32_RTOL = 1e-4  # max |codl - torch| / max |torch|


def outputs_of(module: torch.nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    with torch.no_grad():
        y = module(x)
    return [y] if isinstance(y, torch.Tensor) else list(y)


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max())


@pytest.mark.parametrize("name", list(zoo.MODELS))
def test_model_matches_pytorch_from_module_and_from_onnx(name: str, tmp_path: Path) -> None:
    module, x = zoo.build(name, SMALL.get(name, (64, 64)), width=0.25)
    expected = outputs_of(module, x)
    assert all(e.abs().max() > 1e-3 for e in expected), "degenerate outputs would make the check vacuous"
    path = tmp_path / f"{name}.onnx"
    path.write_bytes(export_onnx(module, x))
    cpu = Processor.parse("cpu")
    for graph in (from_torch(module, x, name=name), load_onnx(path)):
        verify_graph(graph)
        got = ReferenceRunner(graph, cpu)(x)
        assert len(got) == len(expected)
        for g, e in zip(got, expected):
            assert g.shape == e.shape
            assert rel_err(g, e) < FP32_RTOL


def test_paper_model_structure_at_full_width() -> None:
    """The features CoDL's evaluation relies on are present in the built networks."""
    yolo = zoo.graph("yolov2", (64, 64))
    assert yolo.spec(yolo.outputs[0]).shape[1] == 125  # 5 anchors x (5 + 20 classes)
    pose = zoo.graph("posenet", (32, 32))
    concats = [n for n in pose.nodes if n.op is OpKind.CONCAT]
    assert [pose.spec(n.outputs[0]).shape[1] for n in concats] == [149, 149]
    assert sum(1 for n in pose.nodes if n.op is OpKind.CONV and n.attrs["kernel"] == [7, 7]) == 10
    fst = zoo.graph("fst", (32, 32))
    assert [n.attrs["kernel"] for n in fst.nodes if n.op is OpKind.CONV].count([9, 9]) == 2
    retina = zoo.graph("retinaface", (64, 64))
    assert [retina.spec(o).shape[2] for o in retina.outputs] == [2, 4, 10]


def test_model_size_arguments_are_checked() -> None:
    with pytest.raises(CodlError, match="unknown model 'alexnet'; built-in models: vgg16"):
        zoo.build("alexnet")
    with pytest.raises(CodlError, match="multiples of 32"):
        zoo.build("yolov2", (100, 100))


@pytest.mark.parametrize("name", list(zoo.MODELS))
def test_listed_figures_are_the_imported_graphs(name: str) -> None:
    """`codl models` prints these without building anything; they must stay true."""
    from codl.ir import total_flops

    g = zoo.graph(name)
    assert zoo.spec(name).figures == (len(g.nodes), g.num_parameters, total_flops(g))
