"""The plain CNNs of CoDL's evaluation: VGG-16, YOLOv2 (Darknet-19 + detection head),
the Zimmermann & Brox hand-pose PoseNet, and Fast Style Transfer.

Every builder takes ``width`` (channel multiplier; 1.0 is the published network) so tests
can run them small.
"""

from __future__ import annotations

import torch
from torch import nn

from .common import ch, conv_bn


def vgg_stack(cfg: list, width: float, cin: int = 3) -> tuple[nn.Sequential, int]:
    """3x3 conv + ReLU for each channel count in ``cfg``, 2x2 max pool for each "M";
    returns the stack and its output channels."""
    layers: list[nn.Module] = []
    for v in cfg:
        if v == "M":
            layers.append(nn.MaxPool2d(2, 2))
        else:
            layers += [nn.Conv2d(cin, ch(v, width), 3, padding=1), nn.ReLU(inplace=True)]
            cin = ch(v, width)
    return nn.Sequential(*layers), cin


class VGG16(nn.Module):
    """VGG-16 (configuration D) with its three fully connected layers, for 224x224."""

    def __init__(self, width: float = 1.0, image: int = 224, classes: int = 1000) -> None:
        super().__init__()
        cfg = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]
        self.features, cin = vgg_stack(cfg, width)
        hidden, side = ch(4096, width), image // 32
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Linear(cin * side * side, hidden), nn.ReLU(inplace=True),
            nn.Linear(hidden, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


def _leaky() -> nn.Module:
    return nn.LeakyReLU(0.1, inplace=True)


class YOLOv2(nn.Module):
    """YOLOv2 for VOC: Darknet-19 backbone, two 3x3x1024 convs, the passthrough (reorg)
    layer from the 26x26 features, and the 1x1 detection conv (5 anchors x 25)."""

    def __init__(self, width: float = 1.0, anchors: int = 5, classes: int = 20) -> None:
        super().__init__()
        c = lambda n: ch(n, width)  # noqa: E731 - local shorthand

        def block(cfg: list, cin: int) -> tuple[nn.Sequential, int]:
            layers: list[nn.Module] = []
            for v in cfg:
                if v == "M":
                    layers.append(nn.MaxPool2d(2, 2))
                else:
                    cout, k = v
                    layers.append(conv_bn(cin, c(cout), k, act=_leaky()))
                    cin = c(cout)
            return nn.Sequential(*layers), cin

        self.stage1, c1 = block([(32, 3), "M", (64, 3), "M", (128, 3), (64, 1), (128, 3), "M",
                                 (256, 3), (128, 1), (256, 3), "M",
                                 (512, 3), (256, 1), (512, 3), (256, 1), (512, 3)], 3)
        self.stage2, c2 = block(["M", (1024, 3), (512, 1), (1024, 3), (512, 1), (1024, 3),
                                 (1024, 3), (1024, 3)], c1)
        self.passthrough = conv_bn(c1, c(64), 1, act=_leaky())
        self.head = conv_bn(c2 + 4 * c(64), c(1024), 3, act=_leaky())
        self.detect = nn.Conv2d(c(1024), anchors * (5 + classes), 1)

    @staticmethod
    def reorg(x: torch.Tensor, s: int = 2) -> torch.Tensor:
        """Space-to-depth: (N, C, H, W) -> (N, C*s*s, H/s, W/s)."""
        n, c, h, w = x.shape
        x = x.reshape(n, c, h // s, s, w // s, s).permute(0, 3, 5, 1, 2, 4)
        return x.reshape(n, c * s * s, h // s, w // s)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        fine = self.stage1(x)
        coarse = self.stage2(fine)
        return self.detect(self.head(torch.cat([self.reorg(self.passthrough(fine)), coarse], 1)))


class PoseNet(nn.Module):
    """Hand-pose network of Zimmermann & Brox (ICCV 2017), 2-D keypoint part: a VGG-style
    encoder to 128 channels at 1/8 resolution with 21 score maps, then two refinement
    stages of 7x7 convs over the concatenation of features and score maps (149 channels)."""

    def __init__(self, width: float = 1.0, keypoints: int = 21, stages: int = 2) -> None:
        super().__init__()
        c = lambda n: ch(n, width)  # noqa: E731
        cfg = [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 256, 256, 256, 256, 128]
        self.encoder, cin = vgg_stack(cfg, width)
        self.score = nn.Sequential(nn.Conv2d(cin, c(512), 1), nn.ReLU(inplace=True), nn.Conv2d(c(512), keypoints, 1))
        self.stages = nn.ModuleList()
        for _ in range(stages):
            body: list[nn.Module] = []
            sin = cin + keypoints
            for _ in range(5):
                body += [nn.Conv2d(sin, c(128), 7, padding=3), nn.ReLU(inplace=True)]
                sin = c(128)
            body += [nn.Conv2d(sin, c(128), 1), nn.ReLU(inplace=True), nn.Conv2d(c(128), keypoints, 1)]
            self.stages.append(nn.Sequential(*body))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.encoder(x)
        scores = self.score(features)
        for stage in self.stages:
            scores = stage(torch.cat([features, scores], 1))
        return scores


class _FSTConv(nn.Sequential):
    def __init__(self, cin: int, cout: int, k: int, stride: int = 1, relu: bool = True, norm: bool = True) -> None:
        layers: list[nn.Module] = [nn.ReflectionPad2d(k // 2), nn.Conv2d(cin, cout, k, stride)]
        if norm:
            layers.append(nn.InstanceNorm2d(cout, affine=True))
        if relu:
            layers.append(nn.ReLU(inplace=True))
        super().__init__(*layers)


class _Residual(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.body = nn.Sequential(_FSTConv(c, c, 3), _FSTConv(c, c, 3, relu=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class FastStyleTransfer(nn.Module):
    """Johnson et al.'s transformation network: 9x9 conv, two stride-2 convs, five
    residual blocks of 128 channels, nearest-upsampling decoder, 9x9 output conv."""

    def __init__(self, width: float = 1.0) -> None:
        super().__init__()
        c = lambda n: ch(n, width)  # noqa: E731
        self.net = nn.Sequential(
            _FSTConv(3, c(32), 9), _FSTConv(c(32), c(64), 3, 2), _FSTConv(c(64), c(128), 3, 2),
            *[_Residual(c(128)) for _ in range(5)],
            nn.Upsample(scale_factor=2, mode="nearest"), _FSTConv(c(128), c(64), 3),
            nn.Upsample(scale_factor=2, mode="nearest"), _FSTConv(c(64), c(32), 3),
            _FSTConv(c(32), 3, 9, relu=False, norm=False), nn.Tanh())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)
