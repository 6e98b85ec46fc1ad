"""How close outputs are to a reference, and how close they must be."""

from __future__ import annotations

from typing import Sequence

import torch

from ..ir.graph import DType
from ..processors import Processor


def tolerance(proc: Processor) -> float:
    """Relative error ||y - ref|| / ||ref|| accepted against an fp32 reference: fp32 1e-4,
    except on CUDA where PyTorch lets cuDNN run fp32 convolutions in TF32 by default
    (1e-2); fp16 (11 significant bits) 1e-2; bf16 (8 bits) 5e-2, since its rounding
    compounds to a few 1e-2 over the ~30 layers of the deeper models."""
    if proc.dtype is DType.FLOAT32:
        tf32 = proc.device.type == "cuda" and torch.backends.cudnn.allow_tf32
        return 1e-2 if tf32 else 1e-4
    return 1e-2 if proc.dtype is DType.FLOAT16 else 5e-2


def compare(outputs: Sequence[torch.Tensor], references: Sequence[torch.Tensor]) -> dict[str, float]:
    """Worst relative L2 error over the outputs, and for information the worst element
    error relative to the reference's largest magnitude."""
    if len(outputs) != len(references):
        raise ValueError(f"{len(outputs)} outputs but {len(references)} references")
    diffs = [(o.detach().float().cpu() - r.float().cpu(), r.float().cpu()) for o, r in zip(outputs, references)]
    return {"rel_l2_error": max(float(d.norm() / r.norm().clamp_min(1e-12)) for d, r in diffs),
            "max_abs_rel_error": max(float(d.abs().max() / r.abs().max().clamp_min(1e-12)) for d, r in diffs)}
