"""``codl bench MODEL --report DIR``: the results JSON, a per-op CSV, the Perfetto trace of
one co-executed plan, and PNG plots (matplotlib): latency by strategy beside the ideal
bound, each op's time on each processor, and the share each op gives processor 1."""

from __future__ import annotations

import csv
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from ..atomic import write_atomic
from ..errors import CodlError
from ..fingerprint import artifact_header
from ..ir.graph import Graph
from ..plan import CostModel, Plan, Prediction, predict_plan
from ..processors import Processor
from ..profile.model import profile_path


def write_report(res: dict[str, Any], out: str | os.PathLike, settings: dict[str, Any]) -> list[Path]:
    """Write the report files into ``out`` (created); returns their paths."""
    matplotlib = require_matplotlib()
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


def require_matplotlib() -> Any:
    """matplotlib, or a one-line error saying the report needs it (checked before a
    benchmark starts, so that a long run does not end in it)."""
    try:
        import matplotlib
    except ImportError:
        raise CodlError("--report needs matplotlib for its plots (pip install matplotlib)") from None
    return matplotlib


def traced_strategy(strategies: Sequence[str]) -> str | None:
    """The strategy whose plan a report traces: the first of codl, oracle, layer-switch
    and mulayer that is benchmarked."""
    return next((s for s in ("codl", "oracle", "layer-switch", "mulayer") if s in strategies), None)


def op_rows(graph: Graph, plan: Plan, cost: CostModel, trace: Any) -> list[dict[str, Any]]:
    """Per op of ``plan``: placement, predicted ms on each processor (the cost model),
    measured ms on each processor (one traced call)."""
    pred = predict_plan(graph, plan, cost).node_ms
    got = traced_run_ms(trace)
    rows = []
    for node in graph.nodes:
        p = plan.placements[node.name]
        rows.append({"op": node.name, "type": node.op.value,
                     "placement": "split" if p.is_split else ("processor 1" if p.processor else "processor 0"),
                     "dim": p.dim.value if p.is_split else "", "ratio": p.rho,
                     "predicted_ms_0": pred.get(node.name, (0.0, 0.0))[0],
                     "predicted_ms_1": pred.get(node.name, (0.0, 0.0))[1],
                     "measured_ms_0": got.get((node.name, 0), 0.0), "measured_ms_1": got.get((node.name, 1), 0.0)})
    return rows


def traced_run_ms(trace: Any) -> dict[tuple[str, int], float]:
    """ms each node ran on each processor in one traced call (its run slices summed),
    by (node, processor index)."""
    got: dict[tuple[str, int], float] = {}
    for e in trace.events:
        if e.kind == "run" and e.track in trace.tracks[:2]:
            key = (e.name, trace.tracks.index(e.track))
            got[key] = got.get(key, 0.0) + (e.end_ms - e.start_ms)
    return got


@dataclass
class TraceCheck:
    """A traced call against the plan's prediction from the cached model profile."""

    profile: Path  # the model profile the prediction comes from
    predicted: Prediction
    traced_busy_ms: tuple[float, float]  # each processor's op time in the traced call
    worst: list[tuple[float, str, int, float, float]]  # (traced - predicted, node, processor, predicted, traced) ms


def predicted_vs_traced(graph: Graph, plan: Plan, processors: tuple[Processor, Processor], trace: Any,
                        worst: int = 8) -> TraceCheck | None:
    """Where a model profile of ``processors`` is cached (None where not): each
    processor's op time predicted against traced, and the ``worst`` ops predicted
    farthest from their traced time."""
    path = profile_path(graph, processors)
    if not path.exists():
        return None
    pred = predict_plan(graph, plan, CostModel.from_json(json.loads(path.read_text())))
    got = traced_run_ms(trace)
    busy = tuple(sum(v for (_, q), v in got.items() if q == p) for p in (0, 1))
    rows = [(got.get((n, q), 0.0) - ms[q], n, q, ms[q], got.get((n, q), 0.0)) for n, ms in pred.node_ms.items()
            for q in (0, 1) if ms[q] > 0]
    return TraceCheck(path, pred, busy, sorted(rows, key=lambda r: -abs(r[0]))[:worst])  # type: ignore[arg-type]


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
