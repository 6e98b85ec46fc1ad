"""The predictors' common ground: the FLOPs-linear baseline (uLayer's), saving, and
:func:`load_predictor`, which reads any predictor file back.

- :class:`~codl.predict.analytic.AnalyticPredictor`: CoDL's model on the kernel that runs;
- :class:`FlopsPredictor`: time linear in multiply-adds;
- :class:`~codl.predict.forest.ForestPredictor`: nn-Meter's kind of baseline.

They follow scikit-learn's conventions (settings in ``__init__``, ``fit`` returns self,
learned attributes end in ``_``) and save to small versioned JSON.
"""

from __future__ import annotations

import json
from typing import Any, Sequence

import numpy as np

from ..errors import CodlError
from ..fingerprint import SCHEMA_VERSION, artifact_header
from .analytic import AnalyticPredictor, body_bytes, check_coefs, save_json
from .features import OpConfig
from .nnls import nnls_relative

__all__ = ["AnalyticPredictor", "FlopsPredictor", "body_bytes", "load_predictor", "save_json"]


class FlopsPredictor:
    """Latency in ms = a * multiply-adds + b (uLayer's model), fitted by NNLS on relative error."""

    kind = "flops"
    feature_names = ("macs", "dispatch")

    def __init__(self, family: str) -> None:
        self.family = family

    def _matrix(self, configs: Sequence[OpConfig]) -> np.ndarray:
        for c in configs:
            if c.family != self.family:
                raise CodlError(f"{self.kind} predictor for {self.family!r} got a {c.family!r} op")
        return np.array([[float(c.macs), 1.0] for c in configs], dtype=np.float64)

    def fit(self, configs: Sequence[OpConfig], times_ms: Sequence[float]) -> "FlopsPredictor":
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
                "features": list(self.feature_names), "coef_ms": list(self.coef_)}

    def save(self, path: str) -> None:
        save_json(self, path)

    @staticmethod
    def from_json(data: dict[str, Any]) -> "FlopsPredictor":
        if list(data.get("features", [])) != list(FlopsPredictor.feature_names):
            raise CodlError(f"predictor features {data.get('features')} do not match this version's "
                            f"{list(FlopsPredictor.feature_names)}")
        coef = np.asarray(data["coef_ms"], dtype=np.float64)
        check_coefs(coef, "coef_ms")
        if coef.shape != (2,):
            raise CodlError(f"malformed predictor file: flops coef_ms has shape {coef.shape}, not (2,)")
        model = FlopsPredictor(data["family"])
        model.coef_ = coef
        return model


def load_predictor(data: dict[str, Any] | str, expect_fingerprint: dict[str, Any] | None = None) -> Any:
    """A predictor from its JSON (a dict or a file path). Fails clearly on another schema,
    another kind of file, another version of a predictor's format, or (when
    ``expect_fingerprint`` is given) another machine."""
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
    from .forest import ForestPredictor

    readers = {"analytic": AnalyticPredictor.from_json, "flops": FlopsPredictor.from_json,
               "forest": ForestPredictor.from_json}
    if data.get("predictor") not in readers:
        raise CodlError(f"unknown predictor {data.get('predictor')!r}; known: {', '.join(readers)}")
    try:
        return readers[data["predictor"]](data)
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise CodlError(f"malformed predictor file: {e}") from None
