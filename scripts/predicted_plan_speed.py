"""How long planning on the predicted cost model takes (codl.predict.costs), in three parts:
the predictions (every conv and linear whole and at every share, batched), the whole
predicted cost model (with the ops no predictor covers measured whole, and the
exchanges measured), and the codl search on it (make_plan, guard included).

    PYTHONPATH=src python scripts/predicted_plan_speed.py [--runs 5] [--models mobilenetv2,resnet50]

The predictors are fitted on the fixture CPU profile (tests/data/profile-devcpu-own.*:
one thread, fp32, codl's own CPU convs), for two CPU groups of one thread on own
kernels (the pair they are valid for). Prints the fastest of ``--runs`` runs of each
part, in ms.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from codl import zoo
from codl.frontends import from_torch
from codl.plan import make_plan
from codl.predict.costs import Fitted, cost_from_predictors, predict_nodes
from codl.predict.profiles import fit_per_family, profile_configs
from codl.processors import Processor

DATA = Path(__file__).resolve().parent.parent / "tests" / "data"


def fastest_ms(fn, runs: int) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(runs):
        t = time.perf_counter()
        out = fn()
        best = min(best, (time.perf_counter() - t) * 1e3)
    return best, out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--models", default="mobilenetv2,resnet50")
    args = ap.parse_args()
    side = json.loads((DATA / "profile-devcpu-own.json").read_text())
    models = fit_per_family(profile_configs(DATA / "profile-devcpu-own.csv"), side["processor"], "analytic")
    fitted = Fitted(side["processor"], models)
    pair = (Processor.parse("cpu", threads=1, own_kernels=True), Processor.parse("cpu", threads=1, own_kernels=True))
    print(f"{'model':<12} {'ops':>4} {'configs':>8} {'predict ms':>11} {'cost model ms':>14} {'search ms':>10}")
    for name in args.models.split(","):
        module, x = zoo.build(name, zoo.spec(name).input_size, 1.0)
        graph = from_torch(module, x, name=name)
        predict_ms, pred = fastest_ms(lambda: predict_nodes(graph, pair, (fitted, fitted)), args.runs)
        configs = sum(1 + sum(len(p) for p in pts.values()) for q in (0, 1) for pts in pred.points[q].values())
        cost_ms, cost = fastest_ms(lambda: cost_from_predictors(graph, pair, (fitted, fitted), inputs=[x]), args.runs)
        search_ms, _ = fastest_ms(lambda: make_plan(graph, cost, "codl"), args.runs)
        print(f"{name:<12} {len(graph.nodes):>4} {configs:>8} {predict_ms:>11.1f} {cost_ms:>14.1f} {search_ms:>10.1f}")
        print(f"  {cost.source}")


if __name__ == "__main__":
    main()
