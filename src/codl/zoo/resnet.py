"""ResNet-50, and RetinaFace on a ResNet-50 backbone (FPN, SSH context modules, class /
box / landmark heads), as in CoDL's evaluation at 640x640."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .common import ch, conv_bn


class Bottleneck(nn.Module):
    def __init__(self, cin: int, mid: int, stride: int) -> None:
        super().__init__()
        cout = mid * 4
        self.body = nn.Sequential(conv_bn(cin, mid, 1), conv_bn(mid, mid, 3, stride),
                                  conv_bn(mid, cout, 1, act=nn.Identity()))
        self.skip = conv_bn(cin, cout, 1, stride, act=nn.Identity()) if stride != 1 or cin != cout else nn.Identity()
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.body(x) + self.skip(x))


class ResNet50Backbone(nn.Module):
    """Stem and the four stages; returns the outputs of stages 2-4 (strides 8, 16, 32)."""

    def __init__(self, width: float = 1.0) -> None:
        super().__init__()
        c = lambda n: ch(n, width)  # noqa: E731
        self.stem = nn.Sequential(conv_bn(3, c(64), 7, 2), nn.MaxPool2d(3, 2, 1))
        stages, cin = [], c(64)
        for mid, blocks, stride in ((64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)):
            layers = []
            for i in range(blocks):
                layers.append(Bottleneck(cin, c(mid), stride if i == 0 else 1))
                cin = c(mid) * 4
            stages.append(nn.Sequential(*layers))
        self.stages = nn.ModuleList(stages)
        self.channels = [c(128) * 4, c(256) * 4, c(512) * 4]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.stem(x)
        outs = []
        for i, stage in enumerate(self.stages):
            x = stage(x)
            if i >= 1:
                outs.append(x)
        return outs


class ResNet50(nn.Module):
    def __init__(self, width: float = 1.0, classes: int = 1000) -> None:
        super().__init__()
        self.backbone = ResNet50Backbone(width)
        self.fc = nn.Linear(self.backbone.channels[-1], classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feat = self.backbone(x)[-1]
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(feat, 1), 1))


class SSH(nn.Module):
    """Single-stage headless context module: 3x3, 5x5 (two 3x3) and 7x7 (three 3x3)
    branches concatenated."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        half, quarter = cout // 2, cout // 4
        self.b3 = conv_bn(cin, half, 3, act=nn.Identity())
        self.b5a = conv_bn(cin, quarter, 3)
        self.b5 = conv_bn(quarter, quarter, 3, act=nn.Identity())
        self.b7a = conv_bn(quarter, quarter, 3)
        self.b7 = conv_bn(quarter, quarter, 3, act=nn.Identity())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.b5a(x)
        return F.relu(torch.cat([self.b3(x), self.b5(a), self.b7(self.b7a(a))], 1))


class RetinaFace(nn.Module):
    """RetinaFace (Deng et al. 2020) with a ResNet-50 backbone: three-level FPN with
    nearest upsampling, an SSH module per level, and per-level heads for face scores (2),
    boxes (4) and five landmarks (10) for 2 anchors per location; outputs are the three
    concatenated (N, anchors, k) tensors."""

    def __init__(self, width: float = 1.0, anchors: int = 2) -> None:
        super().__init__()
        self.backbone = ResNet50Backbone(width)
        out = ch(256, width)
        self.lateral = nn.ModuleList(conv_bn(c, out, 1) for c in self.backbone.channels)
        self.merge = nn.ModuleList(conv_bn(out, out, 3) for _ in range(2))
        self.ssh = nn.ModuleList(SSH(out, out) for _ in range(3))
        self.heads = nn.ModuleList(nn.ModuleList(nn.Conv2d(out, anchors * k, 1) for k in (2, 4, 10)) for _ in range(3))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        c3, c4, c5 = self.backbone(x)
        p5 = self.lateral[2](c5)
        p4 = self.lateral[1](c4) + F.interpolate(p5, size=c4.shape[2:], mode="nearest")
        p4 = self.merge[1](p4)
        p3 = self.lateral[0](c3) + F.interpolate(p4, size=c3.shape[2:], mode="nearest")
        p3 = self.merge[0](p3)
        feats = [ssh(p) for ssh, p in zip(self.ssh, (p3, p4, p5))]
        outs = []
        for k_index, k in enumerate((2, 4, 10)):
            per_level = [heads[k_index](f).permute(0, 2, 3, 1).reshape(x.shape[0], -1, k)
                         for heads, f in zip(self.heads, feats)]
            outs.append(torch.cat(per_level, 1))
        return outs[0], outs[1], outs[2]
