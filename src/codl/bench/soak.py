"""A soak: many calls of one compiled session, watched window by window.

Every ``window`` calls it records the latency (median, p99), the host's resident memory,
the GPU memory torch holds and the GPU memory in use on the device, and checks the
output against a reference. A leak shows as growth from the second window to the last
(the first window warms caches and pools), drift as a changed median.

Example::

    rows = soak(session, [x], expected, calls=10_000, window=500)
    print(format_soak(rows)); summary = soak_summary(rows)
"""

from __future__ import annotations

import statistics
import time
from typing import Any, Callable, Sequence

import numpy as np
import torch

from .accuracy import compare
from .energy import peak_host_mb


def host_rss_mb() -> float:
    """The process's resident memory now, in MB (Linux /proc; elsewhere the peak so far)."""
    try:
        with open("/proc/self/statm") as f:
            pages = int(f.read().split()[1])
    except (OSError, ValueError, IndexError):
        return peak_host_mb()
    import resource

    return pages * resource.getpagesize() / 1e6


def gpu_memory_mb() -> tuple[float, float, float]:
    """(allocated by torch, reserved by torch's cache, in use on the device) in MB; zeros
    without CUDA."""
    if not torch.cuda.is_available():
        return 0.0, 0.0, 0.0
    free, total = torch.cuda.mem_get_info()
    return torch.cuda.memory_allocated() / 1e6, torch.cuda.memory_reserved() / 1e6, (total - free) / 1e6


def soak(session: Callable[..., list[torch.Tensor]], inputs: Sequence[torch.Tensor],
         expected: Sequence[torch.Tensor], calls: int, window: int = 500, tol: float = 5e-2,
         progress: Callable[[int], None] | None = None) -> list[dict[str, Any]]:
    """Call ``session(*inputs)`` ``calls`` times; one row per ``window`` calls (see the
    module docstring). ``tol``: the largest relative L2 error of an output accepted."""
    if calls < 1 or window < 1:
        raise ValueError(f"calls and window must be positive, got {calls} and {window}")
    rows: list[dict[str, Any]] = []
    times: list[float] = []
    for i in range(calls):
        t0 = time.perf_counter()
        out = session(*inputs)
        times.append((time.perf_counter() - t0) * 1e3)
        if (i + 1) % window == 0 or i + 1 == calls:
            err = compare(out, expected)["rel_l2_error"]
            allocated, reserved, used = gpu_memory_mb()
            rows.append({"calls": i + 1, "median_ms": statistics.median(times),
                         "p99_ms": float(np.percentile(times, 99)), "host_rss_mb": host_rss_mb(),
                         "gpu_allocated_mb": allocated, "gpu_reserved_mb": reserved, "gpu_used_mb": used,
                         "rel_l2_error": err, "right": err < tol})
            times = []
        if progress is not None:
            progress(i + 1)
    return rows


def soak_summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Growth and drift from the second window (the first where there are fewer) to the
    last: memory in MB, the median's ratio, and whether every checked output was right."""
    first, last = rows[1] if len(rows) > 2 else rows[0], rows[-1]
    return {"calls": last["calls"], "windows": len(rows),
            "host_rss_growth_mb": last["host_rss_mb"] - first["host_rss_mb"],
            "gpu_allocated_growth_mb": last["gpu_allocated_mb"] - first["gpu_allocated_mb"],
            "gpu_used_growth_mb": last["gpu_used_mb"] - first["gpu_used_mb"],
            "median_drift": last["median_ms"] / first["median_ms"],
            "median_range_ms": (min(r["median_ms"] for r in rows[1:] or rows), max(r["median_ms"] for r in rows[1:] or rows)),
            "all_right": all(r["right"] for r in rows)}


def format_soak(rows: list[dict[str, Any]]) -> str:
    """The windows as a text table."""
    lines = [f"{'calls':>7} {'median ms':>9} {'p99 ms':>8} {'host MB':>8} {'GPU alloc MB':>12} "
             f"{'GPU used MB':>11} {'rel err':>8}"]
    for r in rows:
        lines.append(f"{r['calls']:>7} {r['median_ms']:>9.3f} {r['p99_ms']:>8.3f} {r['host_rss_mb']:>8.1f} "
                     f"{r['gpu_allocated_mb']:>12.1f} {r['gpu_used_mb']:>11.1f} {r['rel_l2_error']:>8.1e}")
    return "\n".join(lines)


__all__ = ["soak", "soak_summary", "format_soak", "host_rss_mb", "gpu_memory_mb"]
