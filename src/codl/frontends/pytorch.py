"""Import a ``torch.nn.Module`` by exporting it to ONNX in memory and reading that.

Going through ONNX means one importer serves both frontends, so a module and its
``.onnx`` export give the same Graph by construction. It uses PyTorch's TorchScript-based
exporter (``dynamo=False``), which needs no extra packages and folds BatchNorm into
convolutions in eval mode.

Example::

    graph = from_torch(model.eval(), torch.randn(1, 3, 224, 224), name="resnet50")
"""

from __future__ import annotations

import io
import warnings
from typing import Sequence

import torch

from ..errors import GraphError, first_line
from ..ir.graph import Graph
from .onnx import from_onnx_model

OPSET = 17


def export_onnx(module: torch.nn.Module, example: torch.Tensor | Sequence[torch.Tensor]) -> bytes:
    """The ONNX bytes of ``module`` traced on ``example`` (opset 17, static shapes)."""
    args = (example,) if isinstance(example, torch.Tensor) else tuple(example)
    n_in = len(args)
    with torch.no_grad():
        outs = module(*args)
    n_out = 1 if isinstance(outs, torch.Tensor) else len(outs)
    in_names = ["input"] if n_in == 1 else [f"input_{i}" for i in range(n_in)]
    out_names = ["output"] if n_out == 1 else [f"output_{i}" for i in range(n_out)]
    buf = io.BytesIO()
    was_training = module.training
    module.eval()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(module, args, buf, dynamo=False, opset_version=OPSET,
                              input_names=in_names, output_names=out_names, do_constant_folding=True)
    except Exception as e:
        raise GraphError(f"cannot export {type(module).__name__} to ONNX: {first_line(e)}") from e
    finally:
        module.train(was_training)
    return buf.getvalue()


def from_torch(module: torch.nn.Module, example: torch.Tensor | Sequence[torch.Tensor], name: str | None = None) -> Graph:
    """The Graph of ``module`` for inputs shaped like ``example`` (weights are copied)."""
    import onnx

    model = onnx.load_model_from_string(export_onnx(module, example))
    return from_onnx_model(model, name=name or type(module).__name__, source=name or type(module).__name__)
