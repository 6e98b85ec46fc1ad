"""Model importers: ONNX files and PyTorch modules both become a :class:`~codl.ir.Graph`."""

from .onnx import from_onnx_model, load_onnx
from .pytorch import export_onnx, from_torch

__all__ = ["load_onnx", "from_onnx_model", "from_torch", "export_onnx"]
