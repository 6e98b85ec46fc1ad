"""The faster of two kernels for one op, chosen by timing both on the GPU, once per shape.

Neither kernel source wins everywhere: at 8 SMs of an H200 a 64->32 3x3 conv at 480x640
took 8.75 ms on cuDNN and 2.09 ms on codl's own kernel, while a 9x9 conv of the same
model was 1.5-2x faster on cuDNN (docs/results/planners.md). A :class:`~codl.ops.backend.Backend`
with ``fastest`` gives a conv or linear a kernel made by :func:`faster_of`: on its first
call with a given signature (the op's key plus its inputs' shapes, strides and types) it
times the libraries' and the own kernel on those inputs, on the current stream, and from
then on runs the faster. Choices are kept for the process (:func:`choices`), so a profile,
a session and the GPU alone of one run use the same kernel for the same shape.

Times are the device's: a short sleep kernel is queued first, so the timed calls queue up
behind it and the host's launch cost (which a captured CUDA graph does not pay) is left
out. A call made while a CUDA graph is being captured cannot time anything: an unchosen
signature then runs on the libraries, and the choice waits for an eager call.

Example::

    kernel = faster_of(("conv", 3, 1), library_conv, own_conv)
    y = kernel(x, w, b)            # times both on x's shape once, then runs the faster
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Hashable

import torch

from .base import Kernel

ROUNDS = 3  # timed rounds per kernel, alternating; the fastest round counts
CALLS = 2  # calls per round
SLEEP_CYCLES = 1_000_000  # GPU clock cycles the queue waits behind (about 0.5 ms)


@dataclass(frozen=True)
class Choice:
    """One signature's measured kernels: device ms per call of each, and the one kept."""

    library_ms: float
    own_ms: float

    @property
    def own(self) -> bool:
        return self.own_ms < self.library_ms


_CHOICES: dict[Hashable, Choice] = {}


def choices() -> dict[Hashable, Choice]:
    """The choices made so far in this process (signature -> :class:`Choice`)."""
    return dict(_CHOICES)


def forget() -> None:
    """Drop every choice (the next call of each signature times again)."""
    _CHOICES.clear()


def signature(key: Hashable, args: tuple) -> Hashable:
    """``key`` with each tensor argument's shape, strides, type and device, and whether
    cuDNN times its own candidates (an autotuned processor's library kernels differ)."""
    return (key, torch.backends.cudnn.benchmark,
            *((tuple(a.shape), a.stride(), a.dtype, a.device) if isinstance(a, torch.Tensor) else a for a in args))


def device_ms(fn: Callable[[], object]) -> float:
    """Device ms per call of ``fn`` on the current CUDA stream (:data:`CALLS` calls queued
    behind a sleep kernel, so the host's launch time is not counted)."""
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    torch.cuda._sleep(SLEEP_CYCLES)
    start.record()
    for _ in range(CALLS):
        fn()
    end.record()
    end.synchronize()
    return start.elapsed_time(end) / CALLS


def measure(library: Kernel, own: Kernel, args: tuple, timer: Callable[[Callable[[], object]], float] = device_ms) -> Choice:
    """Both kernels on ``args``: one untimed call each (compiles, plans), then
    :data:`ROUNDS` alternating rounds; each kernel's fastest round."""
    library(*args)
    own(*args)
    lib, mine = [], []
    for _ in range(ROUNDS):
        lib.append(timer(lambda: library(*args)))
        mine.append(timer(lambda: own(*args)))
    return Choice(min(lib), min(mine))


def capturing() -> bool:
    return torch.cuda.is_available() and torch.cuda.is_current_stream_capturing()


def faster_of(key: Hashable, library: Kernel, own: Kernel, applies: Callable[..., bool] = lambda *a: True,
              timer: Callable[[Callable[[], object]], float] = device_ms) -> Kernel:
    """A kernel that runs ``own`` or ``library``, whichever :func:`measure` found faster
    for the call's signature (``key``: what identifies the op besides its inputs).
    Calls for which ``applies`` is false (inputs the own kernel leaves to the libraries)
    run ``library`` without timing."""

    def kernel(*args: torch.Tensor | None) -> torch.Tensor:
        if not applies(*args):
            return library(*args)
        sig = signature(key, args)
        choice = _CHOICES.get(sig)
        if choice is None:
            if capturing():
                return library(*args)
            choice = _CHOICES[sig] = measure(library, own, args, timer)
        return own(*args) if choice.own else library(*args)
    return kernel


__all__ = ["Choice", "choices", "faster_of", "forget", "measure", "signature"]
