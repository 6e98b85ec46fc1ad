"""Fit the predictors on one profile and score them on another profile's new ops.

The held-out splits of `codl predictor eval` draw test ops from the same profiling run as
the training ops. This check is stricter: the models are fitted on the whole of one
profile (say, yesterday's) and judged on the ops of a second profile, measured later
with another seed, that the first never measured (by base op key).

Usage: PYTHONPATH=src python scripts/predictor_fresh_check.py TRAIN.csv FRESH.csv [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from codl.predict.evaluate import fit_predictors, score
from codl.profile import load_profile


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("train")
    ap.add_argument("fresh")
    ap.add_argument("--json", help="write the figures here too")
    args = ap.parse_args()
    train_path, fresh_path = Path(args.train), Path(args.fresh)
    described = [json.loads(p.with_suffix(".json").read_text())["processor"] for p in (train_path, fresh_path)]
    if described[0] != described[1]:
        print(f"the profiles measured different processors: {described[0]} and {described[1]}", file=sys.stderr)
        return 2
    train = [(b, s.config(), ms) for b, s, ms in load_profile(train_path)]
    seen = {b for b, _, _ in train}
    fresh = [(b, s.config(), ms) for b, s, ms in load_profile(fresh_path) if b not in seen]
    results: dict = {}
    print(f"fitted on {train_path.name} ({len(train)} samples), judged on the {len(fresh)} samples of "
          f"{fresh_path.name} whose ops the first never measured")
    print(f"{'family':<8} {'predictor':<10} {'+-5%':>6} {'+-10%':>6} {'+-15%':>6} {'RMSPE':>7} {'train/test':>11}")
    for family in sorted({c.family for _, c, _ in fresh}):
        tc = [c for _, c, _ in train if c.family == family]
        tt = [t for _, c, t in train if c.family == family]
        ec = [c for _, c, _ in fresh if c.family == family]
        et = np.array([t for _, c, t in fresh if c.family == family])
        results[family] = {}
        for name, model in fit_predictors(family, tc, tt, described[0]).items():
            s = {**score(model.predict(ec), et), "n_train": len(tc), "n_test": len(ec)}
            results[family][name] = s
            print(f"{family:<8} {name:<10} {s['within_5']:>6.1%} {s['within_10']:>6.1%} {s['within_15']:>6.1%} "
                  f"{s['rmspe']:>7.3f} {len(tc):>5}/{len(ec):<5}")
    if args.json:
        Path(args.json).write_text(json.dumps({"train": train_path.name, "fresh": fresh_path.name, "results": results}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
