"""Benchmarks and reports: timing runs and summarising latencies."""

from .accuracy import compare, tolerance
from .run import LatencyStats, time_calls

__all__ = ["LatencyStats", "time_calls", "compare", "tolerance"]
