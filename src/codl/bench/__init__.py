"""Benchmarks and reports: timing runs and summarising latencies."""

from .accuracy import check_elements, compare, tolerance
from .run import LatencyStats, time_calls

__all__ = ["LatencyStats", "time_calls", "compare", "tolerance", "check_elements"]
