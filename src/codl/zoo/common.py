"""Building blocks and seeded initialisation shared by the evaluation models.

Weights are random but shaped like trained ones: convs and linears use He-normal
initialisation (so activations keep their scale through deep stacks), and BatchNorm
layers get non-trivial running statistics so that folding them is really exercised.
"""

from __future__ import annotations

import math

import torch
from torch import nn


def ch(channels: int, width: float, minimum: int = 4) -> int:
    """Scale a channel count by ``width``, keeping it a multiple of 4 and >= minimum."""
    return max(minimum, int(round(channels * width / 4)) * 4)


def conv_bn(cin: int, cout: int, k: int, stride: int = 1, groups: int = 1, act: nn.Module | None = None,
            dilation: int = 1) -> nn.Sequential:
    """Conv (no bias) + BatchNorm + activation (ReLU unless given; nn.Identity for none)."""
    pad = dilation * (k - 1) // 2
    return nn.Sequential(nn.Conv2d(cin, cout, k, stride, pad, dilation=dilation, groups=groups, bias=False),
                         nn.BatchNorm2d(cout), act if act is not None else nn.ReLU(inplace=True))


def init_weights(module: nn.Module, seed: int = 0) -> nn.Module:
    """Seeded, scale-preserving random weights; returns the module in eval mode."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                fan_in = m.weight[0].numel()
                m.weight.copy_(torch.randn(m.weight.shape, generator=gen) * math.sqrt(2.0 / fan_in))
                if m.bias is not None:
                    m.bias.copy_(torch.randn(m.bias.shape, generator=gen) * 0.01)
            elif isinstance(m, (nn.BatchNorm2d, nn.InstanceNorm2d, nn.LayerNorm)):
                if getattr(m, "weight", None) is not None:
                    m.weight.copy_(1.0 + 0.1 * torch.randn(m.weight.shape, generator=gen))
                    m.bias.copy_(0.1 * torch.randn(m.bias.shape, generator=gen))
                if isinstance(m, nn.BatchNorm2d):
                    m.running_mean.copy_(0.1 * torch.randn(m.running_mean.shape, generator=gen))
                    m.running_var.copy_(1.0 + 0.2 * torch.rand(m.running_var.shape, generator=gen))
        for p in module.parameters():
            if p.dim() == 3 and p.shape[0] == 1:  # learned tokens and position tables (1, n, d)
                p.copy_(0.02 * torch.randn(p.shape, generator=gen))
    return module.eval()
