"""Benchmarks and reports: timing runs and summarising latencies."""

from ..timing import LatencyStats, time_calls
from .accuracy import check_elements, compare, tolerance

__all__ = ["LatencyStats", "time_calls", "compare", "tolerance", "check_elements"]
