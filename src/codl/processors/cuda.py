"""CUDA specifics: a stream limited to a number of SMs through a CUDA green context.

``limited_stream(device, sms)`` returns a stream whose kernels run on at most ``sms``
streaming multiprocessors (the ``gpu-limited`` regime). It is created once per
(device, sms) and reused; run work on it with ``torch.cuda.stream(...)``.
"""

from __future__ import annotations

import torch

from ..errors import CodlError

_STREAMS: dict[tuple[int, int], tuple[object, torch.cuda.Stream]] = {}


def limited_stream(device: int, sms: int) -> torch.cuda.Stream:
    key = (device, sms)
    if key not in _STREAMS:
        try:
            from torch.cuda.green_contexts import GreenContext
        except ImportError:
            raise CodlError(f"torch {torch.__version__} has no CUDA green contexts; an SM limit needs them") from None
        total = torch.cuda.get_device_properties(device).multi_processor_count
        if not 1 <= sms <= total:
            raise CodlError(f"SM limit {sms} outside 1..{total} for cuda:{device}")
        with torch.cuda.device(device):
            try:
                ctx = GreenContext.create(num_sms=sms, device_id=device)
            except TypeError:  # torch 2.11 takes them positionally
                ctx = GreenContext.create(sms, device)
            ctx.set_context()
            try:
                stream = ctx.Stream()
            finally:
                ctx.pop_context()
        _STREAMS[key] = (ctx, stream)  # keep the context alive as long as its stream
    return _STREAMS[key][1]
