"""Energy and memory per inference, where the machine lets us read them.

- GPU energy: NVML's total-energy counter (``nvmlDeviceGetTotalEnergyConsumption``, mJ,
  Volta and newer) through nvidia-ml-py.
- CPU package energy: Linux RAPL (``/sys/class/powercap/intel-rapl:N/energy_uj``,
  every package, wrap-around handled); often readable by root only.
- Peak GPU memory: PyTorch's allocator peak over the measured calls; peak host memory:
  the process's peak resident set (it covers the whole run, not one strategy).

A reader that cannot work says why; its figures are then ``None``, never guessed.
"""

from __future__ import annotations

import glob
import os
import resource
import sys
import time
from typing import Any, Callable

RAPL_ROOT = "/sys/class/powercap"


class Rapl:
    """CPU package energy counters in joules, summed over packages."""

    def __init__(self, root: str = RAPL_ROOT) -> None:
        self.zones = sorted(p for p in glob.glob(os.path.join(root, "intel-rapl:*"))
                            if os.path.basename(p).count(":") == 1)
        self.why: str | None = None
        if not self.zones:
            self.why = f"no RAPL package counters under {root}"
            return
        try:
            self.ranges = [int(open(os.path.join(z, "max_energy_range_uj")).read()) for z in self.zones]
            self.read()
        except (OSError, ValueError) as e:
            self.why = f"RAPL counters not readable ({e.__class__.__name__}: {e}); run as root or grant read access"

    def read(self) -> list[int]:
        return [int(open(os.path.join(z, "energy_uj")).read()) for z in self.zones]

    @staticmethod
    def joules(before: list[int], after: list[int], ranges: list[int]) -> float:
        return sum(((a - b) % (r + 1) if a < b else a - b) for b, a, r in zip(before, after, ranges)) / 1e6


class Nvml:
    """GPU energy in joules (one device)."""

    def __init__(self, index: int = 0) -> None:
        self.why: str | None = None
        try:
            import pynvml

            pynvml.nvmlInit()
            self.handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            self.nvml = pynvml
            self.read()
        except ImportError:
            self.why = "nvidia-ml-py is not installed (pip install nvidia-ml-py)"
        except Exception as e:  # noqa: BLE001 - NVML raises its own error types per call
            self.why = f"NVML energy counter unavailable ({e.__class__.__name__}: {e})"

    def read(self) -> float:
        return self.nvml.nvmlDeviceGetTotalEnergyConsumption(self.handle) / 1e3


def measure_energy(fn: Callable[[], object], min_calls: int = 10, min_s: float = 0.5, gpu: bool = False,
                   gpu_index: int = 0, rapl: Rapl | None = None, nvml: Nvml | None = None) -> dict[str, Any]:
    """Call ``fn`` at least ``min_calls`` times and ``min_s`` seconds; energy per call (mJ)
    of the CPU packages and the GPU, and the GPU allocator's peak, each with the reason
    where unavailable."""
    import torch

    rapl = rapl or Rapl()
    nvml = (nvml or Nvml(gpu_index)) if gpu else None
    if gpu:
        torch.cuda.synchronize(gpu_index)
        torch.cuda.reset_peak_memory_stats(gpu_index)
    cpu0 = rapl.read() if rapl.why is None else None
    gpu0 = nvml.read() if nvml is not None and nvml.why is None else None
    start, calls = time.perf_counter(), 0
    while calls < min_calls or time.perf_counter() - start < min_s:
        fn()
        calls += 1
    if gpu:
        torch.cuda.synchronize(gpu_index)
    out: dict[str, Any] = {"calls": calls, "seconds": time.perf_counter() - start}
    if cpu0 is not None:
        out["cpu_mj_per_call"] = Rapl.joules(cpu0, rapl.read(), rapl.ranges) * 1e3 / calls
    else:
        out["cpu_mj_per_call"], out["cpu_energy_unavailable"] = None, rapl.why
    if gpu0 is not None:
        out["gpu_mj_per_call"] = (nvml.read() - gpu0) * 1e3 / calls  # type: ignore[union-attr]
    else:
        out["gpu_mj_per_call"] = None
        out["gpu_energy_unavailable"] = nvml.why if nvml is not None else "no GPU in this pair"
    out["gpu_peak_mb"] = torch.cuda.max_memory_allocated(gpu_index) / 1e6 if gpu else None
    return out


def peak_host_mb() -> float:
    """The process's peak resident set so far, in MB."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 1e6 if sys.platform == "darwin" else peak / 1e3
