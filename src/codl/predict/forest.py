"""The random-forest baseline (nn-Meter's kind of predictor): a forest of regression
trees on the op's raw parameters, predicting log latency.

Fitting uses scikit-learn (``pip install codl[forest]``); the fitted trees are exported
to plain arrays, so prediction and the saved JSON need no scikit-learn and no pickle.
"""

from __future__ import annotations

import json
import math
from typing import Any, Sequence

import numpy as np

from ..atomic import write_atomic
from ..errors import CodlError
from ..fingerprint import artifact_header
from .features import OpConfig

RAW_FEATURES = ("log_m", "log_n", "log_k", "log_in", "log_out", "group", "kernel", "stride", "log_macs", "log_padded")


def raw_features(config: OpConfig) -> list[float]:
    """The op's own parameters, log-scaled where they span orders of magnitude: the
    inputs of the random forest (nn-Meter's approach), named in RAW_FEATURES."""
    return [math.log(max(config.m, 1)), math.log(max(config.n, 1)), math.log(max(config.k, 1)),
            math.log(max(config.in_elems, 1)), math.log(max(config.out_elems, 1)), float(config.group),
            float(config.kernel), float(config.stride), math.log(max(config.macs, 1)), math.log1p(config.padded)]


class ForestPredictor:
    kind = "forest"

    def __init__(self, family: str, n_trees: int = 100, seed: int = 0) -> None:
        self.family, self.n_trees, self.seed = family, n_trees, seed

    def _matrix(self, configs: Sequence[OpConfig]) -> np.ndarray:
        for c in configs:
            if c.family != self.family:
                raise CodlError(f"forest predictor for {self.family!r} got a {c.family!r} op")
        return np.array([raw_features(c) for c in configs], dtype=np.float64)

    def fit(self, configs: Sequence[OpConfig], times_ms: Sequence[float]) -> "ForestPredictor":
        try:
            from sklearn.ensemble import RandomForestRegressor
        except ImportError:
            raise CodlError("the forest predictor needs scikit-learn to fit (pip install 'codl[forest]')") from None
        forest = RandomForestRegressor(n_estimators=self.n_trees, random_state=self.seed, min_samples_leaf=2)
        forest.fit(self._matrix(configs), np.log(np.asarray(times_ms, dtype=np.float64)))
        self.trees_ = [{"left": t.tree_.children_left.tolist(), "right": t.tree_.children_right.tolist(),
                        "feature": t.tree_.feature.tolist(), "threshold": t.tree_.threshold.tolist(),
                        "value": t.tree_.value.reshape(-1).tolist()} for t in forest.estimators_]
        self._arrays = None
        return self

    def _tree_arrays(self) -> list[tuple[np.ndarray, ...]]:
        if getattr(self, "_arrays", None) is None:
            self._arrays = [tuple(np.asarray(t[k]) for k in ("left", "right", "feature", "threshold", "value"))
                            for t in self.trees_]
        return self._arrays

    def predict(self, configs: Sequence[OpConfig]) -> np.ndarray:
        """Predicted latency in ms (the exponential of the mean log prediction)."""
        if not hasattr(self, "trees_"):
            raise CodlError("this forest predictor is not fitted")
        x = self._matrix(configs)
        total = np.zeros(len(x))
        rows = np.arange(len(x))
        for left, right, feature, threshold, value in self._tree_arrays():
            node = np.zeros(len(x), dtype=np.int64)
            while True:
                inner = left[node] >= 0
                if not inner.any():
                    break
                go_left = x[rows, np.maximum(feature[node], 0)] <= threshold[node]
                node = np.where(inner, np.where(go_left, left[node], right[node]), node)
            total += value[node]
        return np.exp(total / len(self.trees_))

    def to_json(self) -> dict[str, Any]:
        return {**artifact_header("predictor"), "predictor": self.kind, "family": self.family,
                "features": list(RAW_FEATURES), "trees": self.trees_}

    def save(self, path: str) -> None:
        """Written whole or not at all (a temporary file renamed into place)."""
        write_atomic(path, json.dumps(self.to_json()))

    @staticmethod
    def from_json(data: dict[str, Any]) -> "ForestPredictor":
        if list(data.get("features", [])) != list(RAW_FEATURES):
            raise CodlError(f"forest features {data.get('features')} do not match this version's {list(RAW_FEATURES)}")
        try:
            trees = data["trees"]
            for i, t in enumerate(trees):
                check_tree(t["left"], t["right"], t["feature"], t["threshold"], t["value"], len(RAW_FEATURES), f"tree {i}")
            model = ForestPredictor(data["family"], len(trees))
        except (KeyError, TypeError) as e:
            raise CodlError(f"malformed forest predictor: missing or wrong field {e}") from None
        model.trees_ = trees
        model._arrays = None
        return model


def check_tree(left: Sequence[int], right: Sequence[int], feature: Sequence[int], threshold: Sequence[float],
               value: Sequence[float], n_features: int, where: str) -> None:
    """A tree's arrays are consistent and every walk ends: each child comes after its
    parent (as fitting lays trees out), leaves are marked -1 on both sides, features
    exist, thresholds and values are finite."""
    n = len(left)
    if not n or not (len(right) == len(feature) == len(threshold) == len(value) == n):
        raise CodlError(f"malformed forest predictor: {where} has arrays of different lengths or none")
    for i in range(n):
        lo, hi = int(left[i]), int(right[i])
        if (lo < 0) != (hi < 0):
            raise CodlError(f"malformed forest predictor: {where} node {i} has one child")
        if lo >= 0 and not (i < lo < n and i < hi < n and 0 <= int(feature[i]) < n_features
                           and np.isfinite(threshold[i])):
            raise CodlError(f"malformed forest predictor: {where} node {i} points to {lo}, {hi} "
                            f"(children must come after their parent, within {n} nodes)")
        if lo < 0 and not np.isfinite(value[i]):
            raise CodlError(f"malformed forest predictor: {where} leaf {i} has value {value[i]}")
