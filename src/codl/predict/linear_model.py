"""Latency models linear in their features, fitted by non-negative least squares on
relative error (the accuracy that matters is +-10% of the measured time).

- :class:`AnalyticPredictor`: CoDL's model, on the ceil-based features of
  :mod:`codl.predict.features` (one coefficient = the time of one basic unit);
- :class:`FlopsPredictor`: the uLayer baseline, time linear in multiply-adds.

Both follow scikit-learn's conventions (settings in ``__init__``, ``fit`` returns self,
learned attributes end in ``_``) and save to small versioned JSON.
"""

from __future__ import annotations

import itertools
import json
from typing import Any, Sequence

import numpy as np

from ..errors import CodlError
from ..fingerprint import SCHEMA_VERSION, artifact_header
from .features import HardwareParams, OpConfig, feature_names, features


def nnls_relative(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Non-negative w minimising sum(((x @ w) - y) / y)^2. Exact for the few features
    used here: every subset of active features is solved by least squares, and the best
    non-negative solution kept."""
    scale = 1.0 / np.maximum(y, 1e-12)
    a, b = x * scale[:, None], y * scale
    best, best_err = np.zeros(x.shape[1]), np.inf
    for r in range(1, x.shape[1] + 1):
        for cols in itertools.combinations(range(x.shape[1]), r):
            w_sub, *_ = np.linalg.lstsq(a[:, cols], b, rcond=None)
            if np.any(w_sub < 0):
                continue
            w = np.zeros(x.shape[1])
            w[list(cols)] = w_sub
            err = float(np.sum((a @ w - b) ** 2))
            if err < best_err:
                best, best_err = w, err
    return best


class _LinearLatencyModel:
    kind = ""

    def __init__(self, family: str, hw: HardwareParams) -> None:
        self.family, self.hw = family, hw

    def _matrix(self, configs: Sequence[OpConfig]) -> np.ndarray:
        for c in configs:
            if c.family != self.family:
                raise CodlError(f"{self.kind} predictor for {self.family!r} got a {c.family!r} op")
        return np.array([self._features(c) for c in configs], dtype=np.float64)

    def _features(self, config: OpConfig) -> list[float]:
        raise NotImplementedError

    def fit(self, configs: Sequence[OpConfig], times_ms: Sequence[float]) -> "_LinearLatencyModel":
        y = np.asarray(times_ms, dtype=np.float64)
        if len(configs) != len(y) or len(y) == 0:
            raise CodlError(f"fit needs as many times as configs (got {len(configs)} and {len(y)})")
        self.coef_ = nnls_relative(self._matrix(configs), y)
        return self

    def predict(self, configs: Sequence[OpConfig]) -> np.ndarray:
        """Predicted latency in ms of each config."""
        if not hasattr(self, "coef_"):
            raise CodlError(f"this {self.kind} predictor is not fitted")
        return self._matrix(configs) @ self.coef_

    def to_json(self) -> dict[str, Any]:
        return {**artifact_header("predictor"), "predictor": self.kind, "family": self.family,
                "hardware": self.hw.__dict__, "features": list(self.feature_names), "coef_ms": list(self.coef_)}

    @property
    def feature_names(self) -> tuple[str, ...]:
        raise NotImplementedError

    def save(self, path: str) -> None:
        with open(path, "w", encoding="utf-8") as f:
            json.dump(self.to_json(), f)


class AnalyticPredictor(_LinearLatencyModel):
    kind = "analytic"

    def _features(self, config: OpConfig) -> list[float]:
        return features(config, self.hw)

    @property
    def feature_names(self) -> tuple[str, ...]:
        return feature_names(self.family, self.hw)


class FlopsPredictor(_LinearLatencyModel):
    kind = "flops"

    def _features(self, config: OpConfig) -> list[float]:
        return [float(config.macs), 1.0]

    @property
    def feature_names(self) -> tuple[str, ...]:
        return ("macs", "dispatch")


PREDICTORS = {p.kind: p for p in (AnalyticPredictor, FlopsPredictor)}


def load_predictor(data: dict[str, Any] | str, expect_fingerprint: dict[str, Any] | None = None) -> _LinearLatencyModel:
    """A predictor from its JSON (a dict or a file path). Fails clearly on another schema,
    another kind of file, or (when ``expect_fingerprint`` is given) another machine."""
    if isinstance(data, str):
        try:
            with open(data, encoding="utf-8") as f:
                data = json.load(f)
        except (OSError, json.JSONDecodeError) as e:
            raise CodlError(f"{data}: not a readable predictor file ({e})") from None
    assert isinstance(data, dict)
    if data.get("kind") != "predictor":
        raise CodlError(f"not a codl predictor file (kind={data.get('kind')!r})")
    if data.get("schema_version") != SCHEMA_VERSION:
        raise CodlError(f"predictor schema {data.get('schema_version')!r} is not the supported {SCHEMA_VERSION}")
    if expect_fingerprint is not None:
        theirs = data.get("fingerprint", {})
        diff = sorted(k for k in ("cpu", "gpu", "gpu_sms", "torch") if theirs.get(k) != expect_fingerprint.get(k))
        if diff:
            raise CodlError("predictor was fitted on another machine or software: "
                            + ", ".join(f"{k} {theirs.get(k)!r} here {expect_fingerprint.get(k)!r}" for k in diff))
    if data.get("predictor") == "forest":
        from .forest import ForestPredictor

        return ForestPredictor.from_json(data)  # type: ignore[return-value]
    try:
        cls = PREDICTORS[data["predictor"]]
        model = cls(data["family"], HardwareParams(**data["hardware"]))
        coef = np.asarray(data["coef_ms"], dtype=np.float64)
    except (KeyError, TypeError) as e:
        raise CodlError(f"malformed predictor file: {e}") from None
    if coef.shape != (len(model.feature_names),) or list(data.get("features", [])) != list(model.feature_names):
        raise CodlError(f"predictor features {data.get('features')} do not match this version's "
                        f"{list(model.feature_names)}")
    model.coef_ = coef
    return model
