"""CUDA specifics: streams limited to a number of SMs through a CUDA green context, and
the pair of streams a co-execution session drives a GPU with.

``limited_stream(device, sms)`` returns a stream whose kernels run on at most ``sms``
streaming multiprocessors (the ``gpu-limited`` regime). It is created once per
(device, sms) and reused; run work on it with ``torch.cuda.stream(...)``. Kernels
captured into a CUDA graph from such a stream keep the limit when the graph is replayed
(measured on the H200: an 8-SM matmul took 2.49 ms eager and replayed).

``session_streams(device, sms)`` gives (compute, copy): the stream a session's GPU work
runs on and a second one for its copies, from the same green context under an SM limit.
"""

from __future__ import annotations

import torch

from ..errors import CodlError

_CONTEXTS: dict[tuple[int, int], tuple[object, list[torch.cuda.Stream]]] = {}
_SIDE: dict[int, tuple[torch.cuda.Stream, torch.cuda.Stream]] = {}


def _green(device: int, sms: int) -> tuple[object, list[torch.cuda.Stream]]:
    key = (device, sms)
    if key not in _CONTEXTS:
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
                streams = [ctx.Stream(), ctx.Stream()]
            finally:
                ctx.pop_context()
        _CONTEXTS[key] = (ctx, streams)  # keep the context alive as long as its streams
    return _CONTEXTS[key]


def limited_stream(device: int, sms: int) -> torch.cuda.Stream:
    return _green(device, sms)[1][0]


def session_streams(device: int, sms: int | None) -> tuple[torch.cuda.Stream, torch.cuda.Stream]:
    """(compute, copy) streams for a session on ``device`` (limited to ``sms`` SMs)."""
    if sms is not None:
        streams = _green(device, sms)[1]
        return streams[0], streams[1]
    if device not in _SIDE:
        _SIDE[device] = (torch.cuda.Stream(device), torch.cuda.Stream(device))
    return _SIDE[device]
