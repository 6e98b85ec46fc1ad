"""Channels: one region crossing between the two processors once per inference, and
the signalling between their threads. See :mod:`codl.runtime.session` for how they are
used and :mod:`codl.runtime.sync` for the flag mechanism.
"""

from __future__ import annotations

import threading

import torch

from ..ir.regions import Box, box_shape
from ..processors import Processor, ProcessorKind
from .reference import to_processor
from .sync import FlagArray


class Aborted(Exception):
    """The other processor failed; this one stops."""


class Sync:
    """Per-session signalling between the two threads: channel ``ch`` is ready for the
    current inference when ``ready[ch] == generation``."""

    def __init__(self, n_channels: int) -> None:
        self.cond = threading.Condition()
        self.ready = [0] * n_channels
        self.generation = 0
        self.error: BaseException | None = None

    def post(self, ch: int) -> None:
        with self.cond:
            self.ready[ch] = self.generation
            self.cond.notify_all()

    def wait(self, ch: int) -> None:
        with self.cond:
            while self.ready[ch] != self.generation:
                if self.error is not None:
                    raise Aborted
                self.cond.wait()

    def abort(self, error: BaseException) -> None:
        with self.cond:
            if self.error is None:
                self.error = error
            self.cond.notify_all()


class Channel:
    """One region crossing from ``src`` to ``dst`` once per inference. With a GPU on
    either end it is staged through a pinned host buffer in the CPU side's type (the GPU
    does the type conversion, which is cheap there)."""

    def __init__(self, ch: int, box: Box, src: Processor, dst: Processor, sync: Sync,
                 flags: FlagArray | None) -> None:
        self.ch, self.src, self.dst, self.sync, self.flags = ch, src, dst, sync, flags
        self.staging: torch.Tensor | None = None
        self.event: torch.cuda.Event | None = None
        self.value: torch.Tensor | None = None
        if src.kind is not ProcessorKind.CPU or dst.kind is not ProcessorKind.CPU:
            host = dst if src.kind is not ProcessorKind.CPU else src
            cuda = ProcessorKind.CUDA in (src.kind, dst.kind)
            self.staging = torch.empty(box_shape(box), dtype=host.torch_dtype, pin_memory=cuda)
            if src.kind is ProcessorKind.CUDA and flags is None:
                self.event = torch.cuda.Event()

    def send(self, piece: torch.Tensor) -> None:
        gen = self.sync.generation
        if self.staging is None:  # CPU to CPU: hand over, converted to the receiver's type
            self.value = to_processor(piece, self.dst)
        elif self.src.kind is ProcessorKind.CPU:
            self.staging.copy_(piece)
            if self.flags is not None:
                self.flags.cpu_write(self.ch, gen)
                return
        elif self.src.kind is ProcessorKind.CUDA:
            self.staging.copy_(piece.to(self.staging.dtype), non_blocking=True)
            if self.flags is not None:
                self.flags.gpu_write(self.ch, gen)  # the stream raises it once the copy is done
                return
            self.event.record()  # type: ignore[union-attr]
        else:  # other torch devices (mps, xpu): a blocking copy, then post
            self.staging.copy_(piece.to(self.staging.dtype))
        self.sync.post(self.ch)

    def recv(self) -> torch.Tensor:
        if self.staging is None:
            self.sync.wait(self.ch)
            value, self.value = self.value, None
            return value  # type: ignore[return-value]
        if self.dst.kind is ProcessorKind.CPU:
            if self.flags is not None:
                self.flags.cpu_wait(self.ch, self.sync.generation, lambda: self.sync.error is not None)
            else:
                self.sync.wait(self.ch)
                if self.event is not None:
                    self.event.synchronize()
            return to_processor(self.staging, self.dst)
        if self.flags is not None:
            self.flags.gpu_wait(self.ch, self.sync.generation)  # enqueued: the driver does not block
        else:
            self.sync.wait(self.ch)
        return to_processor(self.staging.to(self.dst.device, non_blocking=True), self.dst)
