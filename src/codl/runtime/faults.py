"""GPU faults as codl errors.

Three kinds reach a session: the GPU is missing, busy or out of memory when a plan is
compiled (:func:`device_errors` turns these into one-line :class:`~codl.errors.CodlError`
s naming the device and what was being done); the allocator runs out of memory during a
call (torch raises it on the thread that enqueues, the call fails, the GPU's context
stays usable and the next call is right); and a device error on a stream (a kernel that
faults or asserts), which CUDA makes sticky: every later call into that context fails, so
the session says it cannot be used again in this process.

A device error is asynchronous: the thread that enqueued the faulting kernel has moved
on, and a CPU thread spinning on a flag the GPU will never raise would wait for the whole
call deadline. :func:`probe_streams` asks the streams (a few microseconds) and is called
from those waits every ``call.PROBE_S``, so such a call fails within milliseconds.
"""

from __future__ import annotations

import contextlib
from typing import Iterator

import torch

from ..errors import CodlError, ExecutionError, first_line
from ..processors import Processor, ProcessorKind

ACCELERATOR_ERROR: type[Exception] = getattr(torch, "AcceleratorError", RuntimeError)


def is_device_error(error: BaseException) -> bool:
    """A CUDA runtime error (not the allocator's out-of-memory, which is recoverable)."""
    if isinstance(error, torch.OutOfMemoryError):
        return False
    return isinstance(error, ACCELERATOR_ERROR) or (isinstance(error, RuntimeError) and "CUDA error" in str(error))


def memory_note(processor: Processor | None) -> str:
    """'x.x of y.y GiB free' on a CUDA processor, or '' where it cannot be read."""
    if processor is None or processor.kind is not ProcessorKind.CUDA:
        return ""
    try:
        free, total = torch.cuda.mem_get_info(processor.index)
    except RuntimeError:
        return ""
    return f"{free / 2**30:.1f} of {total / 2**30:.1f} GiB free"


@contextlib.contextmanager
def device_errors(processor: Processor | None, what: str) -> Iterator[None]:
    """Turn the GPU's out-of-memory and runtime errors raised while doing ``what`` into
    one-line CodlErrors naming ``processor`` (None: "the GPU")."""
    label = processor.label if processor is not None else "the GPU"
    try:
        yield
    except torch.OutOfMemoryError as e:
        note = memory_note(processor)
        raise CodlError(f"not enough memory on {label} to {what}"
                        f"{f' ({note}; another process may hold it)' if note else ''}: {first_line(e)}") from e
    except RuntimeError as e:
        if not is_device_error(e):
            raise
        raise CodlError(f"{label} cannot be used to {what} (busy, in exclusive mode, or in an "
                        f"error state): {first_line(e)}") from e


def probe_streams(streams: tuple[torch.cuda.Stream, ...], label: str) -> None:
    """Raise an ExecutionError naming ``label`` if a device error has reached ``streams``."""
    try:
        for s in streams:
            s.query()
    except RuntimeError as e:
        if not is_device_error(e):
            raise
        raise ExecutionError(f"{label} failed on the device: {first_line(e)}") from e


def broken_message(label: str, error: BaseException) -> str:
    """Why a session cannot be used after a sticky device error."""
    return (f"{label} hit a device error ({first_line(error)}); CUDA keeps such errors, so the GPU "
            f"cannot be used again in this process: start a new one")


__all__ = ["device_errors", "probe_streams", "is_device_error", "broken_message"]
