"""``codl bench MODEL --report DIR``: the results JSON, a per-op CSV, the Perfetto trace of
one co-executed plan, and PNG plots (matplotlib): latency by strategy beside the ideal
bound, each op's time on each processor, and the share each op gives processor 1."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path
from typing import Any

from ..atomic import write_atomic
from ..errors import CodlError
from ..fingerprint import artifact_header


def write_report(res: dict[str, Any], out: str | os.PathLike, settings: dict[str, Any]) -> list[Path]:
    """Write the report files into ``out`` (created); returns their paths."""
    try:
        import matplotlib
    except ImportError:
        raise CodlError("--report needs matplotlib for its plots (pip install matplotlib)") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    d = Path(out)
    d.mkdir(parents=True, exist_ok=True)
    written = []
    trace = res.get("_trace")
    data = {**artifact_header("bench"), "settings": settings, **{k: v for k, v in res.items() if k != "_trace"}}
    written.append(_atomic(d / "results.json", json.dumps(data, indent=1)))
    rows = res.get("op_rows", [])
    if rows:
        path = d / "ops.csv"
        with open(path.with_suffix(".tmp"), "w", newline="", encoding="utf-8") as f:
            w = csv.DictWriter(f, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)
        os.replace(path.with_suffix(".tmp"), path)
        written.append(path)
    if trace is not None:
        written.append(_atomic(d / f"{res['traced']}.trace.json", json.dumps(trace.to_json())))

    strategies = [r["strategy"] for r in res["rows"]]
    med = [r["latency_ms"]["median_ms"] for r in res["rows"]]
    import numpy as np

    lo = [m - float(np.percentile(r["samples_ms"], 10)) for m, r in zip(med, res["rows"])]
    hi = [float(np.percentile(r["samples_ms"], 90)) - m for m, r in zip(med, res["rows"])]
    fig, ax = plt.subplots(figsize=(7, 3.5))
    ax.bar(strategies, med, yerr=[[max(0.0, v) for v in lo], [max(0.0, v) for v in hi]], capsize=3, color="#4c72b0")
    ax.axhline(res["ideal_ms"], color="#c44e52", linestyle="--", label=f"ideal bound {res['ideal_ms']:.2f} ms")
    ax.set_ylabel("latency, ms (median, p10-p90)")
    ax.set_title(f"{res['model']}: latency by strategy")
    ax.legend()
    written.append(_savefig(fig, d / "latency.png"))
    if rows:
        x = range(len(rows))
        fig, ax = plt.subplots(figsize=(max(7, len(rows) * 0.12), 3.5))
        ax.bar(x, [r["measured_ms_0"] for r in rows], label="processor 0", color="#55a868")
        ax.bar(x, [r["measured_ms_1"] for r in rows], bottom=[r["measured_ms_0"] for r in rows], label="processor 1",
               color="#4c72b0")
        ax.set_xlabel("op (model order)")
        ax.set_ylabel("ms in one traced call")
        ax.set_title(f"{res['model']}, {res['traced']} plan: each op's time per processor")
        ax.legend()
        written.append(_savefig(fig, d / "ops.png"))
        fig, ax = plt.subplots(figsize=(max(7, len(rows) * 0.12), 3))
        ax.step(list(x), [r["ratio"] for r in rows], where="mid", color="#8172b2")
        ax.set_ylim(-0.05, 1.05)
        ax.set_xlabel("op (model order)")
        ax.set_ylabel("processor 1's share")
        ax.set_title(f"{res['model']}, {res['traced']} plan: ratio per op")
        written.append(_savefig(fig, d / "ratios.png"))
    return written


def _atomic(path: Path, text: str) -> Path:
    write_atomic(path, text)
    return path


def _savefig(fig: Any, path: Path) -> Path:
    import matplotlib.pyplot as plt

    tmp = path.with_name(path.stem + ".tmp.png")
    fig.tight_layout()
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    os.replace(tmp, path)
    return path
