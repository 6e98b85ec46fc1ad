"""The timing helpers under the names they had here before :mod:`codl.timing` (tests and
scripts import them from this module)."""

from ..timing import (
    LatencyStats,
    _host_block,
    host_launch_ms,
    time_back_to_back,
    time_calls,
)

__all__ = ["LatencyStats", "time_calls", "time_back_to_back", "host_launch_ms", "_host_block"]
