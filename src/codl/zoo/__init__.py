"""The evaluation models, built here with seeded random weights (no downloads).

``build(name, input_size=None, width=1.0)`` returns the eval-mode ``nn.Module`` and an
example input; ``graph(name, ...)`` returns its codl Graph. The defaults are the input
sizes of CoDL's evaluation; smaller ``input_size`` and ``width`` make test-sized models.

Example::

    module, x = build("yolov2", input_size=(128, 128), width=0.25)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from ..errors import CodlError
from ..ir.graph import Graph
from .cnn import VGG16, FastStyleTransfer, PoseNet, YOLOv2
from .common import init_weights
from .mobile import ViT, MobileNetV2
from .resnet import ResNet50, RetinaFace


@dataclass(frozen=True)
class ModelSpec:
    name: str
    input_size: tuple[int, int]  # (H, W) of the published setting
    make: Callable[[float, tuple[int, int]], nn.Module]
    description: str
    paper: bool  # one of CoDL's five evaluation models
    multiple: int = 32  # input sides must be multiples of this
    # (ops, parameters, FLOPs) of the imported graph at the published size and width 1,
    # so that listing the models builds none (tests/test_zoo.py checks them)
    figures: tuple[int, int, int] = (0, 0, 0)


MODELS: dict[str, ModelSpec] = {m.name: m for m in (
    ModelSpec("vgg16", (224, 224), lambda w, hw: VGG16(w, image=hw[0]), "VGG-16 classifier", True,
              figures=(37, 138357544, 30960205824)),
    ModelSpec("yolov2", (416, 416), lambda w, hw: YOLOv2(w), "YOLOv2: Darknet-19 + detection head", True,
              figures=(54, 50645053, 29387201792)),
    ModelSpec("posenet", (256, 256), lambda w, hw: PoseNet(w), "hand-pose network (Zimmermann & Brox)", True, 8,
              figures=(64, 17518847, 60353019904)),
    ModelSpec("fst", (480, 640), lambda w, hw: FastStyleTransfer(w), "Fast Style Transfer (Johnson et al.)", True, 4,
              figures=(65, 1679235, 95028940800)),
    ModelSpec("retinaface", (640, 640), lambda w, hw: RetinaFace(w), "RetinaFace, ResNet-50 + FPN + SSH", True,
              figures=(190, 27264608, 88679065600)),
    ModelSpec("resnet50", (224, 224), lambda w, hw: ResNet50(w), "ResNet-50 classifier", False,
              figures=(122, 25530472, 8195403264)),
    ModelSpec("mobilenetv2", (224, 224), lambda w, hw: MobileNetV2(w), "MobileNetV2 classifier", False,
              figures=(100, 3487816, 607933440)),
    ModelSpec("vit", (224, 224), lambda w, hw: ViT(w, image=hw[0]), "ViT-B/16-style encoder, 12 layers", False, 16,
              figures=(260, 86567668, 35202491232)),
)}


def spec(name: str) -> ModelSpec:
    try:
        return MODELS[name]
    except KeyError:
        raise CodlError(f"unknown model {name!r}; built-in models: {', '.join(MODELS)}") from None


def build(name: str, input_size: tuple[int, int] | int | None = None, width: float = 1.0,
          batch: int = 1, seed: int = 0) -> tuple[nn.Module, torch.Tensor]:
    """The model with seeded weights, in eval mode, and a seeded example input."""
    s = spec(name)
    hw = s.input_size if input_size is None else (input_size, input_size) if isinstance(input_size, int) else tuple(input_size)
    if any(d <= 0 or d % s.multiple for d in hw):
        raise CodlError(f"{name}: input size {hw} must be positive multiples of {s.multiple}")
    if name == "vit" and hw[0] != hw[1]:
        raise CodlError("vit: input must be square")
    if not 0 < width <= 4:
        raise CodlError(f"width must be in (0, 4], got {width}")
    torch.manual_seed(seed)
    module = init_weights(s.make(width, hw), seed)  # type: ignore[arg-type]
    x = torch.randn((batch, 3, *hw), generator=torch.Generator().manual_seed(seed + 1))
    return module, x


def graph(name: str, input_size: tuple[int, int] | int | None = None, width: float = 1.0, batch: int = 1) -> Graph:
    """The codl Graph of a built-in model (through the PyTorch frontend)."""
    from ..frontends import from_torch

    module, x = build(name, input_size, width, batch)
    return from_torch(module, x, name=name)


__all__ = ["MODELS", "ModelSpec", "build", "graph", "spec"]
