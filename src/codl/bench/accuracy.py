"""How close outputs are to a reference, and how close they must be."""

from __future__ import annotations

from typing import Any, Sequence

import torch

from ..ir.graph import DType, Graph
from ..processors import Processor
from ..runtime import ReferenceRunner


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


def check_elements(outputs: Sequence[torch.Tensor], references: Sequence[torch.Tensor], rtol: float,
                   atol: float) -> dict:
    """Element-wise ``|y - ref| <= atol + rtol * |ref|`` over every output: whether all
    pass, the worst element (output, index, value, reference) and the smallest ``rtol``
    (at this ``atol``) and ``atol`` (at this ``rtol``) with which every element would pass."""
    if len(outputs) != len(references):
        raise ValueError(f"{len(outputs)} outputs but {len(references)} references")
    worst: dict | None = None
    need_rtol, need_atol, failing, total = 0.0, 0.0, 0, 0
    for k, (o, r) in enumerate(zip(outputs, references)):
        o, r = o.detach().float().cpu(), r.detach().float().cpu()
        if o.shape != r.shape:
            raise ValueError(f"output {k} has shape {list(o.shape)}, the reference {list(r.shape)}")
        diff = (o - r).abs()
        diff = torch.where(torch.isnan(diff), torch.full_like(diff, float("inf")), diff)
        excess = diff - atol - rtol * r.abs()
        failing += int((excess > 0).sum())
        total += o.numel()
        i = int(torch.argmax(excess))
        if worst is None or float(excess.flatten()[i]) > worst["excess"]:
            idx = [int(v) for v in torch.unravel_index(torch.tensor(i), o.shape)]
            worst = {"output": k, "index": idx, "value": float(o.flatten()[i]), "reference": float(r.flatten()[i]),
                     "abs_error": float(diff.flatten()[i]), "excess": float(excess.flatten()[i])}
        need_rtol = max(need_rtol, float(((diff - atol).clamp_min(0) / r.abs().clamp_min(1e-30)).max()))
        need_atol = max(need_atol, float((diff - rtol * r.abs()).clamp_min(0).max()))
    return {"ok": failing == 0, "rtol": rtol, "atol": atol, "failing": failing, "elements": total,
            "worst": worst, "smallest_rtol": need_rtol, "smallest_atol": need_atol}


def reference_outputs(graph: Graph, module: torch.nn.Module | None, inputs: list[torch.Tensor],
                      onnx_path: str | None) -> tuple[list[torch.Tensor], str]:
    """Reference outputs of ``graph`` on ``inputs`` and what gave them: the PyTorch
    ``module`` where there is one (built-in models), onnxruntime on the ONNX file at
    ``onnx_path`` where installed, else codl's own fp32 CPU run (said so)."""
    with torch.inference_mode():
        if module is not None:
            ref = module(*inputs)
            return ([ref] if isinstance(ref, torch.Tensor) else list(ref)), "the PyTorch module, fp32 on the CPU"
    try:
        import onnxruntime as ort
    except ImportError:
        return list(ReferenceRunner(graph, Processor.parse("cpu"))(*inputs)), (
            "codl's own fp32 CPU run (install onnxruntime to check against it)")
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    feeds = {i.name: t.numpy() for i, t in zip(sess.get_inputs(), inputs)}
    return [torch.from_numpy(o) for o in sess.run(None, feeds)], "onnxruntime (CPU)"


def check_outputs(graph: Graph, module: torch.nn.Module | None, inputs: list[torch.Tensor],
                  outs: list[torch.Tensor], proc: Processor, onnx_path: str | None = None) -> dict[str, Any]:
    """Outputs against the reference (:func:`reference_outputs`, said which): the worst
    ||y - ref|| / ||ref|| over the outputs against ``proc``'s :func:`tolerance`, and for
    information the worst max |y - ref| / max |ref|."""
    refs, against = reference_outputs(graph, module, inputs, onnx_path)
    errors, tol = compare(outs, refs), tolerance(proc)
    return {"against": f"vs {against}", **errors, "tolerance": tol, "ok": errors["rel_l2_error"] <= tol}
