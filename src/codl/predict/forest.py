"""The random-forest baseline (nn-Meter's kind of predictor): a forest of regression
trees on the op's raw parameters, predicting log latency.

Fitting uses scikit-learn (``pip install codl[forest]``); the fitted trees are exported
to plain arrays, so prediction and the saved JSON need no scikit-learn and no pickle.
"""

from __future__ import annotations

import json
from typing import Any, Sequence

import numpy as np

from ..errors import CodlError
from ..fingerprint import artifact_header
from .features import RAW_FEATURES, OpConfig, raw_features


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
        with open(path, "w", encoding="utf-8") as f:
            json.dump(self.to_json(), f)

    @staticmethod
    def from_json(data: dict[str, Any]) -> "ForestPredictor":
        if list(data.get("features", [])) != list(RAW_FEATURES):
            raise CodlError(f"forest features {data.get('features')} do not match this version's {list(RAW_FEATURES)}")
        model = ForestPredictor(data["family"], len(data["trees"]))
        model.trees_ = data["trees"]
        model._arrays = None
        return model
