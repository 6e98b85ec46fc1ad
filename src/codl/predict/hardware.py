"""What the features need to know about a processor, one type per backend:
:class:`GpuParams` (codl's own GPU kernels) and :class:`CpuParams` (the routines PyTorch
runs on a CPU, or codl's own CPU convs). Each has one setting the analytic model fits
per regime rather than reads from the machine (its ``TUNING``): the programs an SM holds
at once on a GPU, the L3 a routine's operands see on a CPU.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, ClassVar, Union

from ..errors import CodlError


@dataclass(frozen=True)
class GpuParams:
    """A GPU running codl's own kernels, whose tiling is a function of the shape and the
    SMs (:func:`codl.ops.own_kernels.gemm_tiling`).

    Example: ``GpuParams(sms=132)`` (an H100), ``GpuParams(sms=8)`` (limited to 8 SMs)."""

    kind: ClassVar[str] = "gpu"
    TUNING: ClassVar[str] = "slots"
    # programs an SM may hold at once: fitted per kernel variant among these
    SLOTS: ClassVar[tuple[int, ...]] = (1, 2, 3, 4, 6, 8)

    sms: int
    slots: int = 1  # programs an SM runs at once

    @property
    def units(self) -> int:
        return self.sms

    @property
    def tuning(self) -> int:
        return self.slots

    def tunings(self) -> tuple[int, ...]:
        return self.SLOTS

    def tuned(self, value: int) -> "GpuParams":
        return replace(self, slots=int(value))

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "sms": self.sms}


@dataclass(frozen=True)
class CpuParams:
    """A CPU: its threads, cache sizes in bytes (per-core L2, shared L3), element size,
    whether PyTorch's own im2col+GEMM conv path can run (float32), and whether codl's own
    CPU convs run (``own``, :mod:`codl.ops.own_cpu`).

    Example: ``CpuParams(threads=1, l2_bytes=1 << 20, l3_bytes=32 << 20, own=True)``."""

    kind: ClassVar[str] = "cpu"
    TUNING: ClassVar[str] = "l3_kib"
    # a CPU routine's operands may see less of the shared L3 than the processor records
    # (other tenants, a victim cache, its own blocking): each routine is fitted with these
    # shares of it and keeps the best (on the development CPU GEMMs keep 1/2 of its 32 MB,
    # GEMVs all of it; docs/results/predictor.md)
    L3_SHARES: ClassVar[tuple[float, ...]] = (1.0, 0.75, 0.5)

    threads: int
    own: bool = False
    l2_bytes: int = 1 << 20
    l3_bytes: int = 32 << 20
    elem_bytes: int = 4
    native_conv: bool = True

    @property
    def units(self) -> int:
        return self.threads

    @property
    def tuning(self) -> int:
        return self.l3_bytes >> 10

    def tunings(self) -> tuple[int, ...]:
        return tuple(sorted({int(self.l3_bytes * share) >> 10 for share in self.L3_SHARES}, reverse=True))

    def tuned(self, value: int) -> "CpuParams":
        return replace(self, l3_bytes=int(value) << 10)

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "threads": self.threads, "own": self.own, "l2_bytes": self.l2_bytes,
                "l3_bytes": self.l3_bytes, "elem_bytes": self.elem_bytes, "native_conv": self.native_conv}


Hardware = Union[GpuParams, CpuParams]


def hardware_from_json(data: dict[str, Any]) -> Hardware:
    """The inverse of ``to_json``; an unknown kind fails naming the known ones."""
    if data.get("kind") == "gpu":
        return GpuParams(sms=int(data["sms"]))
    if data.get("kind") == "cpu":
        return CpuParams(threads=int(data["threads"]), own=bool(data["own"]), l2_bytes=int(data["l2_bytes"]),
                         l3_bytes=int(data["l3_bytes"]), elem_bytes=int(data["elem_bytes"]),
                         native_conv=bool(data["native_conv"]))
    raise CodlError(f"unknown hardware kind {data.get('kind')!r}; known: gpu, cpu")
