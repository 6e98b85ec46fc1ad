"""A processor: one compute device with its settings and its data type.

``Processor`` names a torch device (``cpu``, ``cuda:N``, ``mps``, ``xpu``), the CPU thread
count where it applies, and the data type it computes in: element type plus whether 4-D
tensors are kept channels-last. Everything device-specific (thread setting,
synchronisation, names for fingerprints) goes through it.

On CUDA, two library settings apply while the processor's work is enqueued
(:meth:`Processor.work_context`): under an SM limit, cuBLAS is told to plan its GEMMs
for the SMs left (PyTorch's SM carveout; otherwise it tiles for the whole GPU, and on 8
of 132 SMs linears ran 2.2 times slower in total, docs/results/predictor.md); with
``autotune``, cuDNN times its candidate kernels on the first call of each shape and keeps
the fastest (``torch.backends.cudnn.benchmark``) instead of picking by heuristics. With
``own_kernels``, convs and linears run on codl's own Triton kernels, whose tiling codl
chooses for the SMs the processor may use (:mod:`codl.ops.own_kernels`); with
``fastest_kernels``, each conv and linear shape runs on whichever of the libraries' and
codl's kernels was faster when timed on its first call (:mod:`codl.ops.fastest`). On the CPU,
``own_kernels`` runs ungrouped convs on codl's own path (:mod:`codl.ops.own_cpu`: an
im2col copy in blocks of rows and one GEMM per block). Which kernels run is the
processor's :attr:`Processor.backend`, handed to each node's kernel when a session or
runner is built (``family(node.op).kernel(node, processor.backend)``). The CPU path
reads and writes channels-last tensors, so such a processor is channels-last (the
default it gets; ``channels_last=False`` is refused), and :meth:`Processor.activate`
makes glibc keep freed memory (:func:`codl.ops.own_cpu.keep_freed_memory`,
process-wide). Parsing has no such effects: it only checks and stores settings.

Example::

    cpu = Processor.parse("cpu", threads=8)
    gpu = Processor.parse("cuda", dtype=DType.FLOAT16, channels_last=True)
"""

from __future__ import annotations

import contextlib
import enum
import functools
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch

from ..errors import CodlError
from ..ir.graph import DType
from ..ops.backend import LIBRARY, Backend

TORCH_DTYPES = {DType.FLOAT32: torch.float32, DType.FLOAT16: torch.float16,
                DType.BFLOAT16: torch.bfloat16, DType.FLOAT64: torch.float64}


@functools.lru_cache(maxsize=None)
def _sm_count(index: int) -> int:
    return torch.cuda.get_device_properties(index).multi_processor_count


CPU_CACHE_SYSFS = "/sys/devices/system/cpu/cpu0/cache"


@functools.lru_cache(maxsize=None)
def cpu_cache_bytes(base: str = CPU_CACHE_SYSFS) -> dict[str, int]:
    """The first core's L2 and the L3 in bytes, as Linux reports them under ``base``
    (``l2_bytes``, ``l3_bytes``; empty unless it reports both)."""
    out: dict[str, int] = {}
    try:
        entries = sorted(os.listdir(base))
    except OSError:
        return out
    for entry in entries:
        try:
            with open(f"{base}/{entry}/level") as f:
                level = int(f.read())
            with open(f"{base}/{entry}/type") as f:
                kind = f.read().strip()
            with open(f"{base}/{entry}/size") as f:
                size = f.read().strip()
        except (OSError, ValueError):
            continue
        units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
        if level in (2, 3) and kind in ("Unified", "Data") and size[:-1].isdigit() and size[-1] in units:
            out[f"l{level}_bytes"] = int(size[:-1]) * units[size[-1]]
    return out if len(out) == 2 else {}


class ProcessorKind(enum.Enum):
    CPU = "cpu"
    CUDA = "cuda"
    MPS = "mps"
    XPU = "xpu"


@dataclass(frozen=True)
class Processor:
    kind: ProcessorKind
    index: int = 0
    threads: int | None = None  # CPU only; None keeps torch's default
    dtype: DType = DType.FLOAT32
    channels_last: bool = False
    sm_limit: int | None = None  # CUDA only: run on at most this many SMs (green context)
    cores: tuple[int, ...] | None = None  # CPU only: pin this group's threads to these cores
    autotune: bool = False  # CUDA only: cuDNN times its kernels per shape and keeps the fastest
    own_kernels: bool = False  # codl's own kernels: CUDA convs and linears (codl.ops.own_kernels), CPU convs (codl.ops.own_cpu)
    fastest_kernels: bool = False  # CUDA only: per conv and linear shape, the faster of library and own kernels

    def __post_init__(self) -> None:
        if self.fastest_kernels and self.own_kernels:
            raise CodlError("give own kernels or fastest kernels, not both (fastest picks between own and library)")
        if self.own_kernels and self.kind is ProcessorKind.CPU and not self.channels_last:
            raise CodlError("codl's own CPU kernels read and write channels-last tensors: "
                            "leave channels_last unset (or True) with own_kernels on the cpu")

    @staticmethod
    def parse(text: str, threads: int | None = None, dtype: DType = DType.FLOAT32,
              channels_last: bool | None = None, sm_limit: int | None = None,
              cores: tuple[int, ...] | None = None, autotune: bool = False,
              own_kernels: bool = False, fastest_kernels: bool = False) -> "Processor":
        """From ``cpu``, ``cuda``, ``cuda:1``, ``mps`` or ``xpu``; fails if unavailable.
        A CPU group given ``cores`` uses one thread per core unless ``threads`` says.
        ``channels_last`` (4-D tensors kept NHWC): by default True for a CPU with
        ``own_kernels`` (codl's CPU conv path reads and writes channels-last; False is
        then an error), else False. ``fastest_kernels`` (CUDA with Triton, fp16 or bf16):
        each conv and linear shape on the faster of the libraries and codl's own kernels."""
        name, _, idx = text.partition(":")
        try:
            kind = ProcessorKind(name)
        except ValueError:
            raise CodlError(f"unknown device {text!r}; supported: {[k.value for k in ProcessorKind]}") from None
        if dtype not in TORCH_DTYPES:
            raise CodlError(f"compute dtype {dtype.value} is not supported; use one of "
                            f"{[d.value for d in TORCH_DTYPES]}")
        if threads is not None and (kind is not ProcessorKind.CPU or threads < 1):
            raise CodlError("--threads applies to the cpu device only and must be >= 1")
        if sm_limit is not None and kind is not ProcessorKind.CUDA:
            raise CodlError("an SM limit applies to cuda devices only")
        if autotune and kind is not ProcessorKind.CUDA:
            raise CodlError("--autotune applies to cuda devices only (it turns on cuDNN's per-shape kernel timing)")
        own_cpu = own_kernels and kind is ProcessorKind.CPU
        if channels_last is None:
            channels_last = own_cpu
        if own_kernels and not own_cpu:
            from ..ops.own_kernels import available

            why = available() if kind is ProcessorKind.CUDA else f"codl has no own kernels for {kind.value}"
            if why:
                raise CodlError(f"--own-kernels applies to the cpu and to cuda devices with Triton only: {why}")
        if fastest_kernels:
            from ..ops.own_kernels import available

            why = available() if kind is ProcessorKind.CUDA else f"it chooses between kernels codl has for cuda only, not {kind.value}"
            if why is None and dtype not in (DType.FLOAT16, DType.BFLOAT16):
                why = f"codl's own GPU kernels compute in fp16 or bf16, not {dtype.value} (use --native)"
            if why:
                raise CodlError(f"--fastest-kernels applies to cuda devices with Triton in fp16 or bf16 only: {why}")
        if cores is not None:
            allowed = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else set()
            if kind is not ProcessorKind.CPU or not cores or not set(cores) <= allowed:
                raise CodlError(f"cores {list(cores)}: a CPU group needs a non-empty subset of the cores this "
                                f"process may use {sorted(allowed)} (Linux only)")
            cores = tuple(sorted(set(cores)))
            threads = threads or len(cores)
        proc = Processor(kind, int(idx or 0), threads, dtype, channels_last, sm_limit, cores, autotune, own_kernels,
                         fastest_kernels)
        proc.check_available()
        if sm_limit is not None:
            proc.stream()  # create the green context now: errors surface here, not mid-run
        return proc

    def stream(self) -> "torch.cuda.Stream | None":
        """The stream this processor's work must go to (None: the current stream)."""
        if self.sm_limit is None:
            return None
        from .cuda import limited_stream

        return limited_stream(self.index, self.sm_limit)

    def work_context(self) -> "contextlib.AbstractContextManager[object]":
        """Context under which this processor's work is enqueued: on CUDA its stream, if
        any, and its library settings (restored on exit; they are process-wide in
        PyTorch). Which kernels run is not set here but in :attr:`backend`."""
        if self.kind is not ProcessorKind.CUDA:
            return contextlib.nullcontext()
        return self._cuda_context()

    @property
    def backend(self) -> Backend:
        """The kernels this processor's nodes run on, passed to ``family.kernel(node,
        backend)`` when a session or runner is built: codl's own CPU convs, codl's own
        GPU kernels tiled for the SMs it may use (its SM limit, else all), the faster
        of those and the libraries per shape, or the libraries."""
        if not (self.own_kernels or self.fastest_kernels):
            return LIBRARY
        if self.kind is ProcessorKind.CPU:
            return Backend(own_cpu=True)
        return Backend(gpu_units=self.sm_limit or _sm_count(self.index), fastest=self.fastest_kernels)

    @contextlib.contextmanager
    def _cuda_context(self) -> Iterator[None]:
        stream = self.stream()
        carve = self.blas_sm_target is not None
        if carve:
            before = torch._C._get_sm_carveout_experimental()
            torch._C._set_sm_carveout_experimental(_sm_count(self.index) - self.sm_limit)
        benchmark = torch.backends.cudnn.benchmark
        torch.backends.cudnn.benchmark = benchmark or self.autotune
        try:
            with contextlib.ExitStack() as stack:
                if stream is not None:
                    stack.enter_context(torch.cuda.stream(stream))
                yield
        finally:
            torch.backends.cudnn.benchmark = benchmark
            if carve:
                torch._C._set_sm_carveout_experimental(before)

    @property
    def blas_sm_target(self) -> int | None:
        """The SM count cuBLAS plans for (an SM limit, where PyTorch can pass it on)."""
        if self.sm_limit is None or not hasattr(torch._C, "_set_sm_carveout_experimental"):
            return None
        return self.sm_limit

    @property
    def device(self) -> torch.device:
        if self.kind is ProcessorKind.CPU:
            return torch.device("cpu")
        return torch.device(self.kind.value, self.index)

    @property
    def torch_dtype(self) -> torch.dtype:
        return TORCH_DTYPES[self.dtype]

    def check_available(self) -> None:
        k = self.kind
        ok = (k is ProcessorKind.CPU
              or (k is ProcessorKind.CUDA and torch.cuda.is_available() and self.index < torch.cuda.device_count())
              or (k is ProcessorKind.MPS and torch.backends.mps.is_available())
              or (k is ProcessorKind.XPU and hasattr(torch, "xpu") and torch.xpu.is_available()))
        if not ok:
            raise CodlError(f"device {self.label} is not available on this machine "
                            f"(torch {torch.__version__}, cuda available: {torch.cuda.is_available()})")

    def activate(self) -> None:
        """Apply this processor's settings to the calling thread before it works: its
        CPU thread count (per thread in PyTorch's OpenMP backend) and, for a pinned
        group, its cores (the thread pool it starts afterwards inherits them). With own
        CPU kernels, glibc then keeps freed memory (process-wide, once: large outputs
        reuse mapped memory; :func:`codl.ops.own_cpu.keep_freed_memory`)."""
        if self.kind is not ProcessorKind.CPU:
            return
        if self.own_kernels:
            from ..ops.own_cpu import keep_freed_memory

            keep_freed_memory()
        if self.cores is not None:
            os.sched_setaffinity(0, self.cores)  # 0: the calling thread
        if self.threads is not None:
            torch.set_num_threads(self.threads)

    def synchronize(self) -> None:
        """Wait until all work queued on this device has finished."""
        if self.kind is ProcessorKind.CUDA:
            torch.cuda.synchronize(self.index)
        elif self.kind is ProcessorKind.MPS:
            torch.mps.synchronize()
        elif self.kind is ProcessorKind.XPU:
            torch.xpu.synchronize(self.index)

    @property
    def label(self) -> str:
        return self.kind.value if self.kind is ProcessorKind.CPU else f"{self.kind.value}:{self.index}"

    @staticmethod
    def from_description(d: dict[str, Any]) -> "Processor":
        """The processor :meth:`describe` described (its settings; hardware fields are
        checked by :meth:`parse` against this machine)."""
        try:
            layout = d.get("channels_last")
            return Processor.parse(str(d["device"]), threads=d.get("threads"), dtype=DType(d["dtype"]),
                                   channels_last=None if layout is None else bool(layout), sm_limit=d.get("sm_limit"),
                                   cores=tuple(d["cores"]) if d.get("cores") else None,
                                   autotune=bool(d.get("autotune", False)), own_kernels=d.get("kernels") == "codl",
                                   fastest_kernels=d.get("kernels") == "fastest")
        except (KeyError, ValueError, TypeError) as e:
            raise CodlError(f"malformed processor description {d}: {e}") from None

    def describe(self) -> dict[str, object]:
        """Settings and hardware name, for result files."""
        d: dict[str, object] = {"device": self.label, "dtype": self.dtype.value,
                                "channels_last": self.channels_last}
        if self.kind is ProcessorKind.CPU:
            d["threads"] = self.threads or torch.get_num_threads()
            if self.cores is not None:
                d["cores"] = list(self.cores)
            d.update(cpu_cache_bytes())  # the latency model's cache levels
            if self.own_kernels:
                from ..ops.own_cpu import keep_freed_memory

                d["kernels"] = "codl"
                d["freed_memory"] = "kept" if keep_freed_memory() else "returned"
        elif self.kind is ProcessorKind.CUDA:
            props = torch.cuda.get_device_properties(self.index)
            d["name"], d["sms"] = props.name, props.multi_processor_count
            d["sm_limit"] = self.sm_limit
            if self.blas_sm_target is not None:
                d["blas_sm_target"] = self.blas_sm_target
            if self.autotune:
                d["autotune"] = True
            if self.own_kernels or self.fastest_kernels:
                d["kernels"] = "codl" if self.own_kernels else "fastest"
        return d


def typed_processor(text: str, native: bool, threads: int | None = None, sm_limit: int | None = None,
                    own_kernels: bool = False, fastest_kernels: bool = False) -> Processor:
    """``text``'s processor computing in fp32, or with ``native`` in the GPU machine's
    fastest types: a CPU in bf16 and a GPU in fp16, both channels-last
    (docs/results/baselines.md); with ``own_kernels``, on codl's own kernels (a CPU
    then channels-last); with ``fastest_kernels``, a GPU on the faster source per shape."""
    cpu = text.partition(":")[0] == "cpu"
    dtype = (DType.BFLOAT16 if cpu else DType.FLOAT16) if native else DType.FLOAT32
    return Processor.parse(text, threads, dtype, True if native else None, sm_limit, own_kernels=own_kernels,
                           fastest_kernels=fastest_kernels)


OWN_KERNELS = ("both", "cpu", "gpu")  # which processors of a pair run codl's own kernels


def default_pair(device: str | None = None, native: bool = False, threads: int | None = None,
                 sm_limit: int | None = None, own_kernels: bool | str = False,
                 fastest_kernels: bool = False) -> tuple[Processor, Processor]:
    """The two processors of ``device`` ("cpu,cuda", "cpu,cpu"; default: the CPU with
    CUDA where a GPU is found, else two CPU groups of half the cores each). ``native``:
    the CPU in bf16 and a GPU in fp16, channels-last; ``own_kernels``: True or "both"
    puts both processors on codl's own kernels, "cpu" or "gpu" only that one (with two
    CPU groups "gpu" means the second group); ``fastest_kernels``: the GPU on the faster
    of the libraries and codl's own kernels for each conv and linear shape."""
    device = device or ("cpu,cuda" if torch.cuda.is_available() else "cpu,cpu")
    names = device.split(",")
    if len(names) != 2 or names[0] != "cpu":
        raise CodlError(f"-d {device!r}: give two processors, the CPU first (cpu,cuda or cpu,cpu)")
    which = "both" if own_kernels is True else own_kernels or ""
    if which and which not in OWN_KERNELS:
        raise CodlError(f"own kernels for {which!r}: give one of {', '.join(OWN_KERNELS)}")
    own0, own1 = which in ("both", "cpu"), which in ("both", "gpu")
    if fastest_kernels and names[1] == "cpu":
        raise CodlError("--fastest-kernels applies to a cuda device (-d cpu,cuda), not to two CPU groups")
    if fastest_kernels and own1:
        raise CodlError(f"--own-kernels {which} and --fastest-kernels: the GPU runs either on own kernels or on the "
                        "faster source per shape; give --own-kernels cpu with --fastest-kernels")
    if names[1] == "cpu":
        half = max(1, len(os.sched_getaffinity(0)) // 2) if hasattr(os, "sched_getaffinity") else 1
        return (typed_processor("cpu", native, half, own_kernels=own0),
                typed_processor("cpu", native, half, own_kernels=own1))
    return (typed_processor("cpu", native, threads, own_kernels=own0),
            typed_processor(names[1], native, sm_limit=sm_limit, own_kernels=own1, fastest_kernels=fastest_kernels))
