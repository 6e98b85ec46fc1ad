"""Fine-grained CPU-GPU synchronisation through flags in pinned host memory (seed 000).

A :class:`FlagArray` is an array of 32-bit flags in page-locked host memory that both
sides see. The GPU stream raises a flag after the work before it (``gpu_write``,
cuStreamWriteValue32) or waits until the CPU has raised one (``gpu_wait``); the CPU
raises flags with a plain store and spins on them.

A GPU wait is a one-warp kernel that spins on the flag in host memory (Triton), not
cuStreamWaitValue32: on the H200 machine a copy or kernel queued behind a stream wait
that the CPU met within a few microseconds of its enqueueing started ~50 us late (a
64 KB copy between two flags: 62 us median against 12 us behind the spinning kernel;
the bare round trip 11 vs 4 us; ``docs/results/coexec.md``). Without Triton the stream
wait is used.
Because GPU waits are enqueued ahead of time, the thread driving the GPU never blocks on
the CPU: it enqueues the whole inference, or replays it from a CUDA graph captured once
(stream memory operations are captured like kernels).

Flags are 0 (clear) or 1 (raised), so a captured graph can use them on every call: the
side that waits clears the flag once it has seen it (the GPU with a stream write right
after its wait, the CPU with a store after its spin), and after an abandoned call the
session clears them all once the GPU has finished (:meth:`FlagArray.clear`).

Needs cuda-python (``pip install codl[cuda]``) and a device that supports stream memory
operations; :func:`flags_available` says whether this machine can use them.
"""

from __future__ import annotations

import functools
import time
from typing import Any, Callable

import torch

from ..errors import CodlError

RAISED = 1


def flags_available(device: int = 0) -> str | None:
    """None if flag synchronisation works here, else the reason it cannot."""
    if not torch.cuda.is_available():
        return "no CUDA device"
    try:
        from cuda.bindings import driver as cu
    except ImportError:
        return "cuda-python is not installed (pip install 'codl[cuda]')"
    # Since CUDA 12, 32-bit stream memory operations are part of the core API; older
    # drivers report support through an attribute.
    attr = getattr(cu.CUdevice_attribute, "CU_DEVICE_ATTRIBUTE_CAN_USE_STREAM_MEM_OPS", None)
    if attr is not None:
        torch.cuda.init()
        err, dev = cu.cuDeviceGet(device)
        err2, ok = cu.cuDeviceGetAttribute(attr, dev) if err == cu.CUresult.CUDA_SUCCESS else (err, 0)
        if err2 != cu.CUresult.CUDA_SUCCESS or not ok:
            return "the device does not support stream memory operations"
    return None


@functools.lru_cache(maxsize=None)
def _spin_kernel() -> Any:
    """The GPU-side wait: spin until the flag is raised, then clear it (None without Triton)."""
    try:
        import triton
        import triton.language as tl
    except ImportError:
        return None

    # one compiled variant for every flag: the index is not specialised (a first launch
    # of another variant behind a wait could block on module loading)
    @triton.jit(do_not_specialize=["i"])
    def wait_and_clear(flags_ptr, i):
        seen = tl.load(flags_ptr + i, volatile=True)
        while seen < 1:
            seen = tl.load(flags_ptr + i, volatile=True)
        tl.store(flags_ptr + i, 0)
    return wait_and_clear


def _check(result: tuple, what: str) -> tuple:
    from cuda.bindings import driver as cu

    if result[0] != cu.CUresult.CUDA_SUCCESS:
        raise CodlError(f"{what} failed: {result[0]}")
    return result[1:]


class FlagArray:
    """``n`` flags in pinned host memory, addressable from the CPU and CUDA streams."""

    def __init__(self, n: int, device: int = 0) -> None:
        why = flags_available(device)
        if why is not None:
            raise CodlError(f"fine-grained flag synchronisation is unavailable: {why}; use sync='events'")
        from cuda.bindings import driver as cu

        self._cu = cu
        self.host = torch.zeros(max(n, 1), dtype=torch.int32, pin_memory=True)
        self.view = self.host.numpy()  # CPU reads and writes go straight to the pinned page
        (dptr,) = _check(cu.cuMemHostGetDevicePointer(self.host.data_ptr(), 0), "cuMemHostGetDevicePointer")
        self.base = int(dptr)
        self._spin = _spin_kernel()
        self._self_test(device)

    def _self_test(self, device: int) -> None:
        """One GPU write seen by the CPU and one GPU wait met, or a clear error now rather
        than a hang later. This also loads the wait kernel: a kernel's first launch behind
        a stream wait would block the launching thread until the wait is met."""
        with torch.cuda.device(device):
            stream = torch.cuda.current_stream(device)
            self.gpu_write(stream, 0, 7)
            torch.cuda.synchronize(device)
            if int(self.view[0]) != 7:
                raise CodlError("a flag written by the GPU stream is not visible to the CPU; use sync='events'")
            self.view[0] = RAISED
            self.gpu_wait(stream, 0)
            torch.cuda.synchronize(device)
        if int(self.view[0]) != 0:
            raise CodlError("a GPU wait on a flag did not clear it; use sync='events'")

    @property
    def wait_mechanism(self) -> str:
        return "spinning kernel" if self._spin is not None else "cuStreamWaitValue32"

    def _ptr(self, i: int) -> object:
        return self._cu.CUdeviceptr(self.base + 4 * i)

    def gpu_write(self, stream: torch.cuda.Stream, i: int, value: int = RAISED) -> None:
        """Enqueue on ``stream``: flag ``i`` := ``value`` once the work before it is done."""
        cu = self._cu
        _check(cu.cuStreamWriteValue32(cu.CUstream(stream.cuda_stream), self._ptr(i), value,
                                       cu.CUstreamWriteValue_flags.CU_STREAM_WRITE_VALUE_DEFAULT), "cuStreamWriteValue32")

    def gpu_wait(self, stream: torch.cuda.Stream, i: int) -> None:
        """Enqueue on ``stream``: wait until flag ``i`` is raised, then clear it."""
        if self._spin is not None:
            with torch.cuda.stream(stream):
                self._spin[(1,)](self.host, i, num_warps=1)
            return
        cu = self._cu
        _check(cu.cuStreamWaitValue32(cu.CUstream(stream.cuda_stream), self._ptr(i), RAISED,
                                      cu.CUstreamWaitValue_flags.CU_STREAM_WAIT_VALUE_GEQ), "cuStreamWaitValue32")
        self.gpu_write(stream, i, 0)

    def cpu_raise(self, i: int) -> None:
        self.view[i] = RAISED

    def cpu_wait(self, i: int, check: Callable[[], None]) -> None:
        """Spin until flag ``i`` is raised, then clear it. Every few reads the loop
        releases the GIL (another thread may need it) and calls ``check``, which raises
        to stop waiting (the call was abandoned, or a deadline passed)."""
        view, spins = self.view, 0
        while view[i] != RAISED:
            spins += 1
            if spins % 64 == 0:
                check()
                time.sleep(0)
        view[i] = 0

    def is_raised(self, i: int) -> bool:
        return bool(self.view[i] == RAISED)

    def raise_all(self, indices: list[int]) -> None:
        """Raise the flags the GPU may wait on, so no stream stays blocked (abort)."""
        for i in indices:
            self.view[i] = RAISED

    def clear(self) -> None:
        """Clear every flag (after an abandoned call, once the GPU has finished)."""
        self.view[:] = 0
