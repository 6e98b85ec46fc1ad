"""Fine-grained CPU-GPU synchronisation through flags in pinned host memory (seed 000).

A :class:`FlagArray` is an array of 32-bit counters in page-locked host memory that both
sides see. The GPU stream writes a flag after the work before it (``gpu_write``,
cuStreamWriteValue32) or waits until the CPU has written one (``gpu_wait``,
cuStreamWaitValue32); the CPU writes flags with a plain store and spins on them. Because
GPU waits are enqueued ahead of time, the thread driving the GPU never blocks on the CPU:
it enqueues the whole inference and the stream waits on the flags.

Flags hold the inference's generation number (1, 2, ...), so they never need resetting.

Needs cuda-python (``pip install codl[cuda]``) and a device that supports stream memory
operations; :func:`flags_available` says whether this machine can use them.
"""

from __future__ import annotations

import time
from typing import Callable

import torch

from ..errors import CodlError


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


def _check(result: tuple, what: str) -> tuple:
    from cuda.bindings import driver as cu

    if result[0] != cu.CUresult.CUDA_SUCCESS:
        raise CodlError(f"{what} failed: {result[0]}")
    return result[1:]


class FlagArray:
    """``n`` flags in pinned host memory, addressable from the CPU and a CUDA stream."""

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
        self._self_test(device)

    def _self_test(self, device: int) -> None:
        """One GPU write seen by the CPU, or a clear error now rather than a hang later."""
        with torch.cuda.device(device):
            self.gpu_write(0, 7)
            torch.cuda.synchronize(device)
        if int(self.view[0]) != 7:
            raise CodlError("a flag written by the GPU stream is not visible to the CPU; use sync='events'")
        self.view[0] = 0

    def _stream(self) -> object:
        return self._cu.CUstream(torch.cuda.current_stream().cuda_stream)

    def gpu_write(self, i: int, value: int) -> None:
        """Enqueue on the current stream: flag ``i`` := ``value`` once prior work is done."""
        cu = self._cu
        _check(cu.cuStreamWriteValue32(self._stream(), cu.CUdeviceptr(self.base + 4 * i), value,
                                       cu.CUstreamWriteValue_flags.CU_STREAM_WRITE_VALUE_DEFAULT), "cuStreamWriteValue32")

    def gpu_wait(self, i: int, value: int) -> None:
        """Enqueue on the current stream: wait until flag ``i`` >= ``value`` (cyclic)."""
        cu = self._cu
        _check(cu.cuStreamWaitValue32(self._stream(), cu.CUdeviceptr(self.base + 4 * i), value,
                                      cu.CUstreamWaitValue_flags.CU_STREAM_WAIT_VALUE_GEQ), "cuStreamWaitValue32")

    def cpu_write(self, i: int, value: int) -> None:
        self.view[i] = value

    def cpu_wait(self, i: int, value: int, aborted: Callable[[], bool]) -> None:
        """Spin until flag ``i`` reaches ``value``. Every few reads the loop releases the
        GIL (the GPU's driver thread may need it) and stops if ``aborted()`` turns true."""
        view, spins = self.view, 0
        while int(view[i]) < value:
            spins += 1
            if spins % 64 == 0:
                if aborted():
                    raise TimeoutError("aborted while waiting for a flag")
                time.sleep(0)

    def release_all(self, value: int) -> None:
        """Write ``value`` to every flag, so no stream stays blocked (used on abort)."""
        self.view[:] = value
