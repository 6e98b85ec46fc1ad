"""CoDL's analytic latency model on the kernel or routine that runs: per regime
(:func:`codl.predict.features.regime`), one non-negative linear model of the counted work
(:func:`codl.predict.features.feature_row`).

Saved as versioned JSON (``ANALYTIC_VERSION``): ``coef_us`` maps each regime to a row
``[tuning, *coefficients]``: the hardware's one fitted setting (``TUNING`` of
:mod:`codl.predict.hardware`: programs per SM on a GPU, the L3 in KiB its operands see on
a CPU), then microseconds per unit of each feature, three significant digits.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from ..atomic import write_atomic
from ..errors import CodlError
from ..fingerprint import artifact_header
from . import gpu_own
from .features import OpConfig, fallbacks, feature_names, feature_row, regime
from .hardware import GpuParams, Hardware, hardware_from_json
from .nnls import nnls_relative

ANALYTIC_VERSION = 2  # 2: one row per regime in us, typed hardware (1: gated library models, rows and dicts)


@dataclass(frozen=True)
class RegimeModel:
    """One regime's model: latency in ms = ``feature_row(config, hw) @ coef_us / 1000``,
    ``hw`` carrying the setting fitted for the regime (its ``tuning``)."""

    hw: Hardware
    coef_us: tuple[float | int, ...]

    def predict_ms(self, config: OpConfig) -> float:
        return sum(a * b for a, b in zip(feature_row(config, self.hw), self.coef_us)) / 1e3

    def to_json(self) -> list[float | int]:
        return [self.hw.tuning, *self.coef_us]


def _significant(w: np.ndarray, digits: int) -> np.ndarray:
    """Coefficients rounded to ``digits`` significant digits (what the JSON keeps)."""
    return np.array([float(f"{v:.{digits}g}") for v in w.ravel()]).reshape(w.shape)


def compact(values: Sequence[float]) -> list[float | int]:
    """Whole numbers as ints, so the JSON writes ``0`` and ``3``, not ``0.0`` and ``3.0``."""
    return [int(v) if float(v).is_integer() else float(v) for v in values]


def body_bytes(data: dict[str, Any]) -> int:
    """Bytes of the JSON a saved model needs to predict (without the artifact header)."""
    keep = ("predictor", "family", "hardware", "features", "default", "coef_ms", "coef_us", "trees")
    return len(json.dumps({k: data[k] for k in keep if k in data}, separators=(",", ":")))


def save_json(model: Any, path: str) -> None:
    """Written whole or not at all: a failed write keeps the previous model file."""
    write_atomic(path, json.dumps(model.to_json(), separators=(",", ":")))


def check_coefs(values: Any, where: str) -> None:
    """Fitted coefficients are finite and non-negative (NNLS): anything else would predict
    NaN or negative times."""
    a = np.asarray(values, dtype=np.float64)
    if not np.all(np.isfinite(a)) or np.any(a < 0):
        raise CodlError(f"malformed predictor file: {where} has coefficients that are not finite and "
                        f"non-negative ({a.ravel()[~(np.isfinite(a.ravel()) & (a.ravel() >= 0))][:3].tolist()})")


class AnalyticPredictor:
    """Per regime, one non-negative linear model on the regime's features, fitted once
    for each value of the hardware's tuned setting (``hw.tunings()``), keeping the one
    that fits most training samples within +-10% (then the smaller mean squared
    relative error). ``hw``: the processor, or several candidates for it (a CPU profile
    that did not record its caches): ``fit`` keeps the one that fits most training
    samples within +-10% (``hw_``).

    A regime needs ``min_samples`` (GPU: 12, CPU: 30); on a GPU each kind of op also gets
    a model pooled over its variants where one of them has none. An op of a regime
    without a model takes the first model of the backend's fallback table
    (:func:`codl.predict.features.fallbacks`; the default regime, fitted on most samples,
    last). While the saved model is larger than ``MAX_BYTES``, its rarest regime goes.

    Example::

        model = AnalyticPredictor("conv", GpuParams(sms=132)).fit(configs, times_ms)
        model.predict(configs)  # ms
    """

    kind = "analytic"
    MAX_BYTES = 2000

    def __init__(self, family: str, hw: Hardware | Sequence[Hardware]) -> None:
        self.family, self.hw = family, hw

    @property
    def candidates(self) -> list[Hardware]:
        return list(self.hw) if isinstance(self.hw, (list, tuple)) else [self.hw]

    @property
    def feature_names(self) -> tuple[str, ...]:
        return feature_names(self.family, self.hw_ if hasattr(self, "hw_") else self.candidates[0])

    @staticmethod
    def min_samples(hw: Hardware) -> int:
        return 12 if isinstance(hw, GpuParams) else 30

    def fit(self, configs: Sequence[OpConfig], times_ms: Sequence[float]) -> "AnalyticPredictor":
        y = np.asarray(times_ms, dtype=np.float64)
        if len(configs) != len(y) or len(y) == 0:
            raise CodlError(f"fit needs as many times as configs (got {len(configs)} and {len(y)})")
        for c in configs:
            if c.family != self.family:
                raise CodlError(f"{self.kind} predictor for {self.family!r} got a {c.family!r} op")
        best, best_score = None, -1.0
        for hw in self.candidates:
            state = self._fit_on(hw, configs, y)
            self.hw_, self.default_, self.models_ = state
            pred = self.predict(configs)
            score = float(np.mean(np.abs(pred - y) / y <= 0.10))
            if score > best_score:
                best, best_score = state, score
        assert best is not None
        self.hw_, self.default_, self.models_ = best
        return self

    def _fit_on(self, hw: Hardware, configs: Sequence[OpConfig], y: np.ndarray) -> tuple[Hardware, str, dict[str, RegimeModel]]:
        names = [regime(c, hw) for c in configs]
        counts = {n: names.count(n) for n in set(names)}
        fits: dict[str, RegimeModel] = {}
        for name in sorted(n for n, k in counts.items() if k >= self.min_samples(hw)):
            mine = [i for i, n in enumerate(names) if n == name]
            fits[name] = self._fit_regime(hw, [configs[i] for i in mine], y[mine])
        # a variant without a model of its own takes its kind's (all the kind's variants pooled)
        kinds = [gpu_own.variant_kind(n) if isinstance(hw, GpuParams) else None for n in names]
        for kind in sorted({k for k in kinds if k is not None}):
            mine = [i for i, k in enumerate(kinds) if k == kind]
            if any(names[i] not in fits for i in mine) and len(mine) >= self.min_samples(hw):
                fits[kind] = self._fit_regime(hw, [configs[i] for i in mine], y[mine])
                counts[kind] = len(mine)
        if not fits:
            fits["all"] = self._fit_regime(hw, configs, y)
        default = max(fits, key=lambda n: counts.get(n, len(configs)))
        while len(fits) > 1 and body_bytes(self._json(hw, default, fits)) > self.MAX_BYTES:
            del fits[min((n for n in fits if n != default), key=lambda n: counts[n])]  # the rarest regime goes
        return hw, default, fits

    @staticmethod
    def _fit_regime(hw: Hardware, configs: Sequence[OpConfig], y: np.ndarray) -> RegimeModel:
        """One NNLS fit per value of the hardware's tuned setting, the best kept."""
        best, best_score = None, (-1.0, 0.0)
        for value in hw.tunings():
            tuned = hw.tuned(value)
            f = np.array([feature_row(c, tuned) for c in configs], dtype=np.float64)
            w = nnls_relative(f, y)
            # each row's sum as einsum orders it: settings that fit alike (collinear features)
            # tie up to rounding, and the order of the sum decides such ties (the recorded
            # figures were fitted this way; f @ w sums in another order)
            rel = np.einsum("nf,nf->n", f, np.tile(w, (len(y), 1))) / y - 1
            score = (float(np.mean(np.abs(rel) <= 0.1)), -float(np.mean(rel ** 2)))  # ties: the smaller error
            if score > best_score:
                best, best_score = RegimeModel(tuned, tuple(compact(_significant(w * 1e3, 3)))), score
        assert best is not None
        return best

    def predict(self, configs: Sequence[OpConfig]) -> np.ndarray:
        """Predicted latency in ms of each config."""
        if not hasattr(self, "models_"):
            raise CodlError(f"this {self.kind} predictor is not fitted")
        for c in configs:
            if c.family != self.family:
                raise CodlError(f"{self.kind} predictor for {self.family!r} got a {c.family!r} op")
        return np.array([self.model_for(regime(c, self.hw_)).predict_ms(c) for c in configs], dtype=np.float64)

    def model_for(self, name: str) -> RegimeModel:
        """The model of regime ``name``, or of the first regime of its fallbacks that has one."""
        if name in self.models_:
            return self.models_[name]
        for other in fallbacks(name, list(self.models_), self.default_, self.hw_):
            if other in self.models_:
                return self.models_[other]
        return self.models_[self.default_]

    def _json(self, hw: Hardware, default: str, models: dict[str, RegimeModel]) -> dict[str, Any]:
        return {**artifact_header("predictor"), "predictor": self.kind, "version": ANALYTIC_VERSION,
                "family": self.family, "hardware": hw.to_json(), "features": list(feature_names(self.family, hw)),
                "default": default, "coef_us": {name: m.to_json() for name, m in models.items()}}

    def to_json(self) -> dict[str, Any]:
        return self._json(self.hw_, self.default_, self.models_)

    def save(self, path: str) -> None:
        save_json(self, path)

    @staticmethod
    def from_json(data: dict[str, Any]) -> "AnalyticPredictor":
        """The model saved by :meth:`to_json`; files of another version fail naming it."""
        if data.get("version") != ANALYTIC_VERSION:
            raise CodlError(f"analytic predictor format {data.get('version', 1)} is not the supported "
                            f"{ANALYTIC_VERSION}: refit it (codl predictor fit)")
        hw = hardware_from_json(data["hardware"])
        model = AnalyticPredictor(data["family"], hw)
        names = feature_names(model.family, hw)
        if list(data.get("features", [])) != list(names):
            raise CodlError(f"predictor features {data.get('features')} do not match this version's {list(names)}")
        rows = data["coef_us"]
        if not isinstance(rows, dict) or data["default"] not in rows:
            raise CodlError("malformed predictor file: coef_us is not a table of regimes holding the default")
        models = {}
        for name, row in rows.items():
            if not isinstance(row, list) or len(row) != len(names) + 1:
                raise CodlError(f"predictor model {name!r}: its {len(row) if isinstance(row, list) else row!r} numbers "
                                f"do not match this version's [{hw.TUNING}, *{len(names)} features]")
            check_coefs(row, f"model {name!r}")
            if int(row[0]) < 1:
                raise CodlError(f"malformed predictor file: model {name!r} has {hw.TUNING} {row[0]}")
            models[name] = RegimeModel(hw.tuned(int(row[0])), tuple(row[1:]))
        model.hw_, model.default_, model.models_ = hw, str(data["default"]), models
        return model
