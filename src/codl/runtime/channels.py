"""Channels: one region of one tensor crossing between the two processors once per call.

Between two CPU groups (or a CPU and a device other than CUDA) a :class:`HostChannel`
hands the tensor over; the receiver converts it to its own type.

Between the CPU and a CUDA GPU a :class:`DeviceChannel` stages the region through a
pinned host buffer in the CPU's type and layout, so the CPU side never converts: it
copies its piece into the buffer (one multi-threaded copy) or reads the GPU's piece
from it as it is. Every dtype and layout conversion runs on the GPU. Regions up to
``MAPPED_BYTES`` (every region on an integrated GPU, whose memory is the host's) are read
and written in place by GPU kernels through a mapping of the pinned buffer, with no
copy engine. Larger regions are copied on the GPU side's copy stream, overlapping its
compute stream, in chunks (``CHUNK_BYTES``) so that the CPU's copy, the PCIe transfer
and the GPU's conversion of successive chunks overlap:

- CPU -> GPU: the CPU copies chunk k into the buffer and raises flag k; the copy stream
  waits for flag k and copies the chunk in; the compute stream waits for that copy and
  converts the chunk into the GPU's type.
- GPU -> CPU: the compute stream converts chunk k into a device buffer in the CPU's
  type; the copy stream copies it out; after the last chunk it raises the channel's
  flag, on which the CPU spins.

With ``sync="events"`` the GPU's driver thread waits for the CPU's post instead of a
flag, and the CPU waits for a CUDA event recorded after the copies.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import torch

from ..ir.regions import Box, box_shape
from ..processors import Processor, ProcessorKind
from .call import CallState
from .reference import to_processor
from .sync import FlagArray

if TYPE_CHECKING:
    from .device import GpuSide

CHUNK_BYTES = 4 << 20  # regions above this cross in chunks that overlap copy and conversion
MAX_CHUNKS = 8
MAPPED_BYTES = 1 << 20  # regions up to this are read / written by GPU kernels in place (no DMA)


def mapped_view(host: torch.Tensor, device: torch.device) -> torch.Tensor | None:
    """A CUDA tensor over the pinned host tensor's memory (zero-copy: GPU kernels read
    and write it across the bus), or None where torch or the driver do not allow it."""
    try:
        from cuda.bindings import driver as cu

        err, ptr = cu.cuMemHostGetDevicePointer(host.data_ptr(), 0)
        if err != cu.CUresult.CUDA_SUCCESS:
            return None
        size = host.element_size()
        iface = {"shape": tuple(host.shape), "typestr": f"<i{size}" if size in (1, 2, 4, 8) else "",
                 "strides": tuple(st * size for st in host.stride()), "data": (int(ptr), False), "version": 3}
        holder = type("Mapped", (), {"__cuda_array_interface__": iface})()
        view = torch.as_tensor(holder, device=device).view(host.dtype)
        return view if view.data_ptr() == int(ptr) and view.stride() == host.stride() else None
    except Exception:  # noqa: BLE001 - no cuda-python, an old torch, or a refused pointer: copy instead
        return None


def shares_host_memory(gpu: Processor) -> bool:
    """Whether the CUDA device is integrated with the host (its memory is the host's:
    Jetson and similar), where a mapped buffer costs no transfer at all."""
    return bool(getattr(torch.cuda.get_device_properties(gpu.index), "is_integrated", False))


def kernel_copy(dst: torch.Tensor, src: torch.Tensor) -> None:
    """``dst.copy_(src)`` by a GPU kernel even where both match in type and layout (torch
    would hand that to the copy engine, which on the H200 machine started ~60 us late
    behind a flag wait, against ~7 us for a kernel writing 64 KB across the bus)."""
    if src.dtype == dst.dtype and src.dtype != torch.bool and not src.dtype.is_complex:
        torch.mul(src, 1, out=dst)
    else:
        dst.copy_(src)


class Channel:
    """A region of ``tensor`` sent by processor ``sender`` to the other one."""

    def __init__(self, index: int, tensor: str, box: Box, sender: int) -> None:
        self.index, self.tensor, self.box, self.sender = index, tensor, box, sender
        self.what = f"{tensor!r} {list(box_shape(box))}"

    def send(self, piece: torch.Tensor, state: CallState, side: "GpuSide | None") -> None:
        raise NotImplementedError

    def recv(self, state: CallState, side: "GpuSide | None") -> torch.Tensor:
        raise NotImplementedError

    def internal(self) -> list[torch.Tensor]:
        """Buffers the channel owns and reuses on every call (outputs must not alias them)."""
        return []


class HostChannel(Channel):
    """Between CPU groups, or a CPU and a device without pinned staging (mps, xpu): the
    piece is handed over and converted to the receiver's type by the side that can."""

    def __init__(self, index: int, tensor: str, box: Box, sender: int, src: Processor, dst: Processor) -> None:
        super().__init__(index, tensor, box, sender)
        self.src, self.dst = src, dst

    def send(self, piece: torch.Tensor, state: CallState, side: "GpuSide | None") -> None:
        # A device piece comes to the host here (its own thread); a CPU piece is converted by the receiver.
        state.post(self.index, piece if self.src.kind is ProcessorKind.CPU else to_processor(piece, self.dst))

    def recv(self, state: CallState, side: "GpuSide | None") -> torch.Tensor:
        return to_processor(state.wait_posted(self.index, self.sender, self.what), self.dst)


def _memory_order(shape: tuple[int, ...], channels_last: bool) -> list[int]:
    return [0, 2, 3, 1] if channels_last and len(shape) == 4 else list(range(len(shape)))


def chunk_slices(shape: tuple[int, ...], channels_last: bool, nbytes: int,
                 chunk_bytes: int = CHUNK_BYTES) -> list[tuple[slice, ...]]:
    """Slices cutting a tensor of ``shape`` into dense chunks of about ``chunk_bytes``
    along its outermost axis in memory (of size > 1); one slice for small tensors."""
    full = tuple(slice(None) for _ in shape)
    axis = next((a for a in _memory_order(shape, channels_last) if shape[a] > 1), None)
    n = min(max(1, -(-nbytes // chunk_bytes)), MAX_CHUNKS, shape[axis] if axis is not None else 1)
    if n == 1 or axis is None:
        return [full]
    bounds = [round(i * shape[axis] / n) for i in range(n + 1)]
    return [full[:axis] + (slice(a, b),) + full[axis + 1:] for a, b in zip(bounds, bounds[1:])]


class DeviceChannel(Channel):
    """Between the CPU and a CUDA GPU, through pinned memory in the CPU's type (see the
    module docstring). ``dtype`` is the tensor's element type on the CPU side."""

    def __init__(self, index: int, tensor: str, box: Box, sender: int, cpu: Processor, gpu: Processor,
                 dtype: torch.dtype, flag0: int, mapped: bool | None = None) -> None:
        super().__init__(index, tensor, box, sender)
        shape = box_shape(box)
        self.shape = shape
        floating = dtype.is_floating_point
        cpu_cl = cpu.channels_last and len(shape) == 4 and floating
        self.gpu_format = torch.channels_last if gpu.channels_last and len(shape) == 4 and floating else torch.contiguous_format
        self.gpu_dtype = gpu.torch_dtype if floating else dtype
        fmt = torch.channels_last if cpu_cl else torch.contiguous_format
        self.host = torch.empty(shape, dtype=dtype, pin_memory=True, memory_format=fmt)
        self.dev = torch.empty(shape, dtype=dtype, device=gpu.device, memory_format=fmt)
        self.convert = self.gpu_dtype != dtype or self.gpu_format != fmt
        nbytes = self.host.numel() * self.host.element_size()
        # Small regions: GPU kernels read or write the pinned buffer in place (a DMA behind
        # a flag wait cost ~60 us more than a kernel on the H200 machine); large: DMA chunks.
        # A GPU sharing the host's memory (integrated) maps every region instead of copying.
        if mapped is None:
            mapped = nbytes <= MAPPED_BYTES or shares_host_memory(gpu)
        self.mapped = mapped_view(self.host, gpu.device) if mapped else None
        self.chunks = [tuple(slice(None) for _ in shape)] if self.mapped is not None else chunk_slices(shape, cpu_cl, nbytes)
        self.host_chunks = [self.host[s] for s in self.chunks]
        self.dev_chunks = [self.dev[s] for s in self.chunks]
        self.events = [torch.cuda.Event() for _ in self.chunks]
        self.done = torch.cuda.Event()  # events mode, GPU -> CPU: the copies are complete
        self.flag0 = flag0
        self.n_flags = len(self.chunks) if sender == 0 else 1
        self.flags: FlagArray | None = None  # set by the session in flags mode

    def internal(self) -> list[torch.Tensor]:
        return [self.host]

    @property
    def gpu_waits(self) -> list[int]:
        """The flags the GPU waits on (raised on abort so no stream stays blocked)."""
        return list(range(self.flag0, self.flag0 + self.n_flags)) if self.sender == 0 else []

    def send(self, piece: torch.Tensor, state: CallState, side: "GpuSide | None") -> None:
        if self.sender == 0:
            self._cpu_send(piece, state)
        else:
            self._gpu_send(piece, state, side)  # type: ignore[arg-type]

    def recv(self, state: CallState, side: "GpuSide | None") -> torch.Tensor:
        return self._gpu_recv(state, side) if self.sender == 0 else self._cpu_recv(state)  # type: ignore[arg-type]

    # --- CPU -> GPU -------------------------------------------------------------------
    def _cpu_send(self, piece: torch.Tensor, state: CallState) -> None:
        flags = self.flags
        for k, s in enumerate(self.chunks):
            self.host_chunks[k].copy_(piece[s])
            if flags is not None:
                flags.cpu_raise(self.flag0 + k)
        if flags is None:
            state.post(self.index)

    def _gpu_recv(self, state: CallState, side: "GpuSide") -> torch.Tensor:
        compute, copy, timer, flags = side.compute, side.copy, side.timer, self.flags
        if flags is None:
            state.wait_posted(self.index, 0, self.what)  # events: the driver waits for the CPU's post
        out = torch.empty(self.shape, dtype=self.gpu_dtype, device=self.dev.device,
                          memory_format=self.gpu_format) if self.convert else self.dev
        if self.mapped is not None:  # one kernel reads the pinned buffer across the bus
            if flags is not None:
                b = timer.begin(compute) if timer else None
                flags.gpu_wait(compute, self.flag0)
                if timer:
                    timer.end(b, compute, side.track, "wait", self.tensor)
            b = timer.begin(compute) if timer else None
            kernel_copy(out, self.mapped)
            if timer:
                timer.end(b, compute, side.track, "convert" if self.convert else "copy", self.tensor, self.index, True)
            return out
        for k, s in enumerate(self.chunks):
            with torch.cuda.stream(copy):
                if flags is not None:
                    b = timer.begin(copy) if timer else None
                    flags.gpu_wait(copy, self.flag0 + k)
                    if timer:
                        timer.end(b, copy, side.copy_track, "wait", self.tensor)
                b = timer.begin(copy) if timer else None
                self.dev_chunks[k].copy_(self.host_chunks[k], non_blocking=True)
                if timer:
                    timer.end(b, copy, side.copy_track, "copy", self.tensor, self.index if k == 0 else None, True)
                self.events[k].record(copy)
            b = timer.begin(compute) if timer else None
            compute.wait_event(self.events[k])
            if timer:
                timer.end(b, compute, side.track, "wait", self.tensor)
            if self.convert:
                b = timer.begin(compute) if timer else None
                out[s].copy_(self.dev_chunks[k])
                if timer:
                    timer.end(b, compute, side.track, "convert", self.tensor)
        return out

    # --- GPU -> CPU -------------------------------------------------------------------
    def _gpu_send(self, piece: torch.Tensor, state: CallState, side: "GpuSide") -> None:
        compute, copy, timer, flags = side.compute, side.copy, side.timer, self.flags
        if self.mapped is not None:  # one kernel writes the pinned buffer across the bus
            b = timer.begin(compute) if timer else None
            kernel_copy(self.mapped, piece)
            if timer:
                timer.end(b, compute, side.track, "convert" if self.convert else "copy", self.tensor, self.index)
            if flags is not None:
                flags.gpu_write(compute, self.flag0)
            else:
                self.done.record(compute)
                state.post(self.index)
            return
        last = len(self.chunks) - 1
        for k, s in enumerate(self.chunks):
            b = timer.begin(compute) if timer else None
            self.dev_chunks[k].copy_(piece[s])  # conversion to the CPU's type and layout, on the GPU
            if timer:
                timer.end(b, compute, side.track, "convert", self.tensor)
            self.events[k].record(compute)
            with torch.cuda.stream(copy):
                copy.wait_event(self.events[k])
                b = timer.begin(copy) if timer else None
                self.host_chunks[k].copy_(self.dev_chunks[k], non_blocking=True)
                if timer:
                    timer.end(b, copy, side.copy_track, "copy", self.tensor, self.index if k == last else None)
        if flags is not None:
            flags.gpu_write(copy, self.flag0)
        else:
            self.done.record(copy)
            state.post(self.index)

    def _cpu_recv(self, state: CallState) -> torch.Tensor:
        check = state.checker(1, self.what)
        if self.flags is not None:
            self.flags.cpu_wait(self.flag0, check)
        else:
            state.wait_posted(self.index, 1, self.what)
            while not self.done.query():
                check()
                time.sleep(0)
        return self.host
