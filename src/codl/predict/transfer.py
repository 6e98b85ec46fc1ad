"""The data-sharing model: each primitive's time linear in the bytes it moves (a fixed
cost plus a cost per byte, fitted by non-negative least squares on relative error),
synchronisation a measured constant. Saved as small versioned JSON like the op models.

A primitive may have two linear pieces split at a size learned from the data: on a CPU
a conversion whose data fit in the caches runs several times faster per byte than one
streaming from memory, and a single line cannot follow both.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from ..errors import CodlError
from ..fingerprint import SCHEMA_VERSION, artifact_header
from .nnls import nnls_relative


class TransferPredictor:
    """``fit(rows)`` with rows (kind, bytes, ms); ``predict(kind, bytes)`` in ms."""

    def fit(self, rows: Sequence[tuple[str, int, float]]) -> "TransferPredictor":
        # per kind: [split bytes, per_byte, fixed, per_byte above, fixed above]
        self.coef_: dict[str, list[float]] = {}
        for kind in sorted({k for k, _, _ in rows}):
            b = np.array([b for k, b, _ in rows if k == kind], dtype=np.float64)
            y = np.array([t for k, _, t in rows if k == kind], dtype=np.float64)
            self.coef_[kind] = _fit_pieces(b, y)
        if not self.coef_:
            raise CodlError("no data-sharing measurements to fit")
        return self

    def predict(self, kind: str, nbytes: int | np.ndarray) -> np.ndarray:
        if not hasattr(self, "coef_"):
            raise CodlError("this data-sharing model is not fitted")
        if kind not in self.coef_:
            raise CodlError(f"no data-sharing model for {kind!r}; fitted kinds: {sorted(self.coef_)}")
        split, pb, fixed, pb_hi, fixed_hi = self.coef_[kind]
        b = np.asarray(nbytes, dtype=np.float64)
        return np.where(b <= split, b * pb + fixed, b * pb_hi + fixed_hi)

    def to_json(self) -> dict[str, Any]:
        names = ("split_bytes", "per_byte", "fixed", "per_byte_above", "fixed_above")
        return {**artifact_header("predictor"), "predictor": "transfer",
                "coef_ms": {k: dict(zip(names, v)) for k, v in self.coef_.items()}}

    @staticmethod
    def from_json(data: dict[str, Any]) -> "TransferPredictor":
        if data.get("kind") != "predictor" or data.get("predictor") != "transfer":
            raise CodlError("not a codl data-sharing model")
        if data.get("schema_version") != SCHEMA_VERSION:
            raise CodlError(f"data-sharing model schema {data.get('schema_version')!r} is not the supported "
                            f"{SCHEMA_VERSION}")
        model = TransferPredictor()
        try:
            names = ("split_bytes", "per_byte", "fixed", "per_byte_above", "fixed_above")
            model.coef_ = {k: [float(v[n]) for n in names] for k, v in data["coef_ms"].items()}
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise CodlError(f"malformed data-sharing model: {e}") from None
        return model


def _fit_pieces(b: np.ndarray, y: np.ndarray) -> list[float]:
    """One line, or two split at the measured size that fits best (relative error)."""
    def line(sel: np.ndarray) -> tuple[list[float], float]:
        w = nnls_relative(np.stack([b[sel], np.ones(int(sel.sum()))], axis=1), y[sel])
        err = float(np.sum(((b[sel] * w[0] + w[1]) - y[sel]) ** 2 / y[sel] ** 2))
        return [float(w[0]), float(w[1])], err

    whole, best_err = line(np.ones(len(b), dtype=bool))
    best = [float("inf"), *whole, *whole]
    if best_err <= 1e-4 * len(b):  # one line within ~1% everywhere
        return best
    for split in np.unique(b)[2:-2]:  # at least three sizes on each side
        lo, e_lo = line(b <= split)
        hi, e_hi = line(b > split)
        if e_lo + e_hi < best_err * 0.5:  # a second piece must earn its keep
            best, best_err = [float(split), *lo, *hi], e_lo + e_hi
    return best


def evaluate_transfers(rows: Sequence[tuple[str, int, float]]) -> dict[str, dict[str, float]]:
    """Fit on every other size of each kind, score on the sizes in between (and, for the
    payload-free synchronisation, its passes' median against itself is not a test: it
    is reported as measured)."""
    out: dict[str, dict[str, float]] = {}
    for kind in sorted({k for k, _, _ in rows}):
        mine = sorted((b, t) for k, b, t in rows if k == kind)
        if len(mine) < 4:
            out[kind] = {"measured_ms": float(np.median([t for _, t in mine])), "n_test": 0}
            continue
        train, test = mine[::2], mine[1::2]
        model = TransferPredictor().fit([(kind, b, t) for b, t in train])
        pred = model.predict(kind, np.array([b for b, _ in test]))
        true = np.array([t for _, t in test])
        rel = np.abs(pred - true) / true
        split, _, fixed, per_byte, _ = model.coef_[kind]
        out[kind] = {"within_10": float(np.mean(rel <= 0.10)), "within_15": float(np.mean(rel <= 0.15)),
                     "rmspe": float(np.sqrt(np.mean(rel ** 2))), "fixed_ms": fixed, "split_bytes": split,
                     "gb_per_s": (1e-6 / per_byte) if per_byte > 0 else float("inf"), "n_test": len(test)}
    return out
