"""``codl bench exchange``: CPU <-> GPU exchanges through the session's channel, 64 KB to
32 MB, beside the raw pinned copy (measured by :func:`codl.profile.exchange.measure_exchange`,
which says how), one line per size, conversion and path.

Usage::

    codl bench exchange [--sm-limit 8] [-n 50] [--json out.json]
"""

from __future__ import annotations

from ..profile.exchange import CONVERSIONS, measure_exchange

__all__ = ["measure_exchange", "format_table"]


def format_table(rows: list[dict]) -> str:
    """One line per (size, conversion, path): median us and GB/s each way, and the share
    of the raw copy's bandwidth the exchange reaches (* marks the path a session uses)."""
    by = {(r["bytes"], r["conversion"], r["path"], r["what"]): r for r in rows}
    keys = sorted({(r["bytes"], r["conversion"], r["path"], r["default"]) for r in rows},
                  key=lambda k: (k[0], list(CONVERSIONS).index(k[1]), k[2]))
    lines = [f"{'size':>8} {'conversion':<13} {'path':<7} {'raw h2d':>16} {'cpu->gpu':>16} {'of raw':>6}   "
             f"{'raw d2h':>16} {'gpu->cpu':>16} {'of raw':>6}   {'signal':>7}",
             f"{'':>8} {'':<13} {'':<7} {'us  (GB/s)':>16} {'us  (GB/s)':>16} {'':>6}   {'us  (GB/s)':>16} {'us  (GB/s)':>16}"]
    for b, c, m, default in keys:
        def cell(w: str) -> str:
            r = by[(b, c, m, w)]
            return f"{r['latency_ms']['median_ms'] * 1e3:8.1f} ({r['gb_per_s']:5.1f})"

        def med(w: str) -> float:
            return by[(b, c, m, w)]["latency_ms"]["median_ms"]
        size = f"{b >> 20} MB" if b >= 1 << 20 else f"{b >> 10} KB"
        path = m + ("*" if default else "")
        lines.append(f"{size:>8} {c:<13} {path:<7} {cell('raw_h2d'):>16} {cell('cpu->gpu'):>16} "
                     f"{med('raw_h2d') / med('cpu->gpu'):6.0%}   {cell('raw_d2h'):>16} {cell('gpu->cpu'):>16} "
                     f"{med('raw_d2h') / med('gpu->cpu'):6.0%}   {med('signal') * 1e3:7.1f}")
    return "\n".join(lines)
