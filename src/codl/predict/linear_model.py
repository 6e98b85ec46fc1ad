"""Latency models linear in their features, fitted by non-negative least squares on
relative error (the accuracy that matters is +-10% of the measured time).

- :class:`AnalyticPredictor`: CoDL's model, on the ceil-based features of
  :mod:`codl.predict.features` (one coefficient = the time of one basic unit), one
  linear model per candidate kernel blocking with a small gate choosing among them;
- :class:`FlopsPredictor`: the uLayer baseline, time linear in multiply-adds.

Both follow scikit-learn's conventions (settings in ``__init__``, ``fit`` returns self,
learned attributes end in ``_``) and save to small versioned JSON.
"""

from __future__ import annotations

import json
import os
from dataclasses import replace
from typing import Any, Sequence

import numpy as np

from ..atomic import write_atomic
from ..errors import CodlError
from ..fingerprint import SCHEMA_VERSION, artifact_header
from .features import HardwareParams, OpConfig, feature_names, features, gate_features, regime
from .tree import fit_tree, tree_predict


def nnls_relative(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Non-negative w minimising sum(((x @ w) - y) / y)^2: non-negative least squares on
    the rows scaled by 1/y, by Lawson and Hanson's active-set method (the problem is
    convex, so this is its optimum)."""
    scale = 1.0 / np.maximum(y, 1e-12)
    return nnls(x * scale[:, None], y * scale)


def nnls(a: np.ndarray, b: np.ndarray, tol: float = 1e-10) -> np.ndarray:
    """Non-negative w minimising |a @ w - b|^2 (Lawson-Hanson active set): features join
    the free set by the steepest gradient; where an unconstrained solve on the free set
    turns a weight negative, the step stops at the first zero and that feature leaves."""
    n = a.shape[1]
    w, free = np.zeros(n), np.zeros(n, dtype=bool)
    for _ in range(3 * n + 3):
        grad = a.T @ (b - a @ w)
        join = ~free & (grad > tol * max(1.0, float(np.abs(grad).max())))
        if not join.any():
            break
        free[int(np.argmax(np.where(join, grad, -np.inf)))] = True
        while True:
            z = np.zeros(n)
            z[free] = np.linalg.lstsq(a[:, free], b, rcond=None)[0]
            if np.all(z[free] > 0):
                w = z
                break
            neg = free & (z <= 0)
            gap = w[neg] - z[neg]  # >= 0; 0 only for a weight at zero staying there
            w = w + float(np.min(np.divide(w[neg], gap, out=np.zeros_like(gap), where=gap > 0))) * (z - w)
            free &= w > tol
            w[~free] = 0.0
    return w


def _check_family(kind: str, family: str, configs: Sequence[OpConfig]) -> None:
    for c in configs:
        if c.family != family:
            raise CodlError(f"{kind} predictor for {family!r} got a {c.family!r} op")


def _targets(configs: Sequence[OpConfig], times_ms: Sequence[float]) -> np.ndarray:
    y = np.asarray(times_ms, dtype=np.float64)
    if len(configs) != len(y) or len(y) == 0:
        raise CodlError(f"fit needs as many times as configs (got {len(configs)} and {len(y)})")
    return y


def _save(model: Any, path: str) -> None:
    """Written whole or not at all: a failed write keeps the previous model file."""
    write_atomic(path, json.dumps(model.to_json(), separators=(",", ":")))


class _LinearLatencyModel:
    kind = ""

    def __init__(self, family: str, hw: HardwareParams) -> None:
        self.family, self.hw = family, hw

    def _matrix(self, configs: Sequence[OpConfig]) -> np.ndarray:
        _check_family(self.kind, self.family, configs)
        return np.array([self._features(c) for c in configs], dtype=np.float64)

    def _features(self, config: OpConfig) -> list[float]:
        raise NotImplementedError

    def fit(self, configs: Sequence[OpConfig], times_ms: Sequence[float]) -> "_LinearLatencyModel":
        self.coef_ = nnls_relative(self._matrix(configs), _targets(configs, times_ms))
        return self

    def predict(self, configs: Sequence[OpConfig]) -> np.ndarray:
        """Predicted latency in ms of each config."""
        if not hasattr(self, "coef_"):
            raise CodlError(f"this {self.kind} predictor is not fitted")
        return self._matrix(configs) @ self.coef_

    def to_json(self) -> dict[str, Any]:
        return {**artifact_header("predictor"), "predictor": self.kind, "family": self.family,
                "hardware": self.hw.to_json(), "features": list(self.feature_names), "coef_ms": list(self.coef_)}

    @property
    def feature_names(self) -> tuple[str, ...]:
        raise NotImplementedError

    def save(self, path: str) -> None:
        _save(self, path)


def _significant(w: np.ndarray, digits: int = 4) -> np.ndarray:
    """Coefficients rounded to ``digits`` significant digits (what the JSON keeps)."""
    return np.array([float(f"{v:.{digits}g}") for v in w.ravel()]).reshape(w.shape)


def body_bytes(data: dict[str, Any]) -> int:
    """Bytes of the JSON a saved model needs to predict (without the artifact header)."""
    keep = ("predictor", "family", "hardware", "features", "default", "coef_ms", "trees")
    return len(json.dumps({k: data[k] for k in keep if k in data}, separators=(",", ":")))


def _compact(values: Sequence[float]) -> list[float | int]:
    """Whole numbers as ints, so the JSON writes ``0`` and ``3``, not ``0.0`` and ``3.0``."""
    return [int(v) if float(v).is_integer() else float(v) for v in values]


def fit_min_of_linear(f: np.ndarray, y: np.ndarray, iters: int = 40) -> np.ndarray:
    """Coefficients W (candidates x features) so that min_c f[i, c] @ W[c] fits y[i] in
    relative error: each candidate is refitted (non-negative least squares) on the
    samples it is currently the fastest for, a candidate that is the fastest for too
    few samples is made slower, and the best iterate on the training error is kept
    (the way convex piecewise-linear models are fitted). f: (samples, candidates, features)."""
    return min_of_linear_checkpoints(f, y, (iters,))[0]


def min_of_linear_checkpoints(f: np.ndarray, y: np.ndarray, checkpoints: Sequence[int]) -> list[np.ndarray]:
    """:func:`fit_min_of_linear` run once to the last checkpoint, with the best iterate
    so far at each checkpoint (the same as separate runs of that many rounds)."""
    n, c, k = f.shape
    w = np.array([nnls_relative(f[:, j, :], y) for j in range(c)])
    best, best_err, out = w.copy(), np.inf, []
    for i in range(max(checkpoints)):
        pred = np.einsum("ncf,cf->nc", f, w)
        pred = np.where(pred > 0, pred, np.inf)
        err = float(np.mean(((pred.min(axis=1) - y) / y) ** 2))
        if err < best_err:
            best, best_err = w.copy(), err
        pick = pred.argmin(axis=1)
        for j in range(c):
            mine = pick == j
            w[j] = nnls_relative(f[mine, j, :], y[mine]) if mine.sum() >= k + 3 else w[j] * 1.5
        out += [best] * checkpoints.count(i + 1)
    return out


def refine_by_error(f: np.ndarray, y: np.ndarray, w: np.ndarray, iters: int = 30) -> tuple[np.ndarray, np.ndarray]:
    """Refit each candidate on the samples it explains best (k-plane regression), from
    ``w``; returns the coefficients and each sample's best candidate."""
    k = f.shape[2]
    w = w.copy()
    for _ in range(iters):
        err = np.abs(np.einsum("ncf,cf->nc", f, w) - y[:, None]) / y[:, None]
        pick = err.argmin(axis=1)
        for j in range(f.shape[1]):
            mine = pick == j
            if mine.sum() >= k + 3:
                w[j] = nnls_relative(f[mine, j, :], y[mine])
    err = np.abs(np.einsum("ncf,cf->nc", f, w) - y[:, None]) / y[:, None]
    return w, err.argmin(axis=1)


class AnalyticPredictor:
    """CoDL's analytic model for libraries with many kernels. Per kernel regime
    (:func:`codl.predict.features.regime`): one linear model per candidate blocking on
    its ceil-based features, and a small gate (a classification tree of at most
    ``GATE_LEAVES`` leaves on the GEMM's sizes, :func:`gate_features`) that says which
    candidate the library runs for a shape. Fitting: candidates start as a
    fastest-candidate model (:func:`fit_min_of_linear`), are refined on the samples each
    explains best, and the gate learns that assignment; of six such fits from
    different starts, the one whose gated model fits most training samples within
    +-10% is kept. Only candidates the gate uses
    are kept. A regime without enough samples uses the regime fitted on most. The saved
    model is kept under ``MAX_BYTES``: while it is larger, the largest gate is regrown
    with two leaves fewer, and once no gate can shrink, its rarest regime is dropped. Ops
    of a regime without a model take the nearest one's (:meth:`_model_for`). On codl's
    own kernels a regime (a kernel variant) has one candidate and no gate, needs
    ``OWN_MIN_SAMPLES``, and each kind of op also gets a model pooled over its variants
    for those without one. On a CPU with ``cpu_paths`` a regime is the routine PyTorch
    runs (:func:`codl.predict.features.cpu_path`): one linear model each as well, with
    the L3 size its operands see fitted among ``L3_SHARES`` of the recorded one."""

    kind = "analytic"
    MIN_SAMPLES = 30
    OWN_MIN_SAMPLES = 12  # a variant of codl's own kernel: one linear model, no gate
    GATE_LEAVES = 12
    MAX_BYTES = 2000
    HALF_STARTS = 3

    def __init__(self, family: str, hw: HardwareParams) -> None:
        self.family, self.hw = family, hw

    @property
    def feature_names(self) -> tuple[str, ...]:
        return feature_names(self.family, self.hw)

    SLOTS = (1, 2, 3, 4, 6, 8)
    # a CPU routine's operands may see less of the shared L3 than the processor records
    # (other tenants, a victim cache, its own blocking): each CPU path is fitted with these
    # shares of it and keeps the one that fits most training samples within +-10% (on the
    # development CPU GEMMs keep 1/2 of its 32 MB, GEMVs all of it; docs/results/predictor.md)
    L3_SHARES = (1.0, 0.75, 0.5)

    def _fit_regime(self, configs: Sequence[OpConfig], y: np.ndarray, name: str) -> tuple[tuple[np.ndarray, np.ndarray, np.ndarray], dict[str, Any]]:
        """((gate features, candidate coefficients, the candidate each sample is
        assigned), the gated model with ``GATE_LEAVES`` leaves). A variant of codl's own
        GEMM kernel (one candidate, no gate) is fitted for each number of programs an SM
        may hold at once (``SLOTS``), keeping the one that fits most training samples
        within +-10%; its model is ``[slots, *coefficients in us]``. A CPU path likewise
        for each L3 size of ``L3_SHARES``: ``[L3 in KiB, *coefficients in us]``."""
        if not self._single(name):
            return self._fit_hw(configs, y, self.hw)[0]
        if self.hw.cpu_paths:  # a CPU path: the L3 its operands see (KiB), of L3_SHARES of the recorded one
            options = sorted({int(self.hw.l3_bytes * share) >> 10 for share in self.L3_SHARES}, reverse=True)
            scored = [(self._fit_hw(configs, y, replace(self.hw, l3_bytes=kib << 10)), kib) for kib in options]
        else:
            scored = [(self._fit_hw(configs, y, replace(self.hw, slots=s)), s) for s in self.SLOTS]
        ((state, _), _), best = max(scored, key=lambda fit: fit[0][1])
        # one candidate and no gate: [programs per SM or L3 KiB, coefficients in microseconds (fewer digits)]
        return state, [best, *_compact(_significant(state[1][0] * 1e3, 3))]

    @staticmethod
    def _own(name: str) -> bool:
        return name.startswith("own_")

    @staticmethod
    def _single(name: str) -> bool:
        """A regime whose routine is known (an own-kernel variant, a CPU path): one
        linear model, no gate."""
        return name.startswith(("own_", "cpu_"))

    @staticmethod
    def _kind(name: str) -> str | None:
        """The kind of op of an own-kernel variant's regime (``own_conv_64x32``:
        ``own_conv``), None for other regimes."""
        head, _, tile = name.rpartition("_")
        return head if AnalyticPredictor._own(name) and tile.replace("x", "").isdigit() else None

    def _hw_of(self, model: dict[str, Any] | list[float]) -> HardwareParams:
        if isinstance(model, list) and self.hw.cpu_paths:  # a CPU path: [L3 in KiB, *coefficients]
            return replace(self.hw, l3_bytes=int(model[0]) << 10)
        if isinstance(model, list):  # an own-kernel variant: [slots, *coefficients]
            return replace(self.hw, slots=int(model[0]))
        return self.hw

    @staticmethod
    def _gate_size(model: dict[str, Any] | list[float]) -> int:
        return len(model["gate"]) if isinstance(model, dict) else 0

    def _fit_hw(self, configs: Sequence[OpConfig], y: np.ndarray, hw: HardwareParams) -> tuple[tuple[tuple[np.ndarray, np.ndarray, np.ndarray], dict[str, Any]], tuple[float, float]]:
        """(the fit of :meth:`_fit_regime` on ``hw``, (its share of training samples within
        +-10%, minus its mean squared relative error)): the larger, the better."""
        f = np.array([features(c, hw) for c in configs], dtype=np.float64)
        x = np.array([gate_features(c) for c in configs])
        # the k-plane fit has local optima: several starts (the fastest-candidate model after
        # 40 and 80 rounds, each candidate fitted on all samples, fastest-candidate models
        # of random halves of the samples), keeping the one whose gated model is within
        # +-10% on the most training samples
        each = np.array([nnls_relative(f[:, j, :], y) for j in range(f.shape[1])])
        starts = [each]  # with one candidate (own kernels) every start would end in this fit
        if f.shape[1] > 1:
            starts = [*min_of_linear_checkpoints(f, y, (40, 80)), each]
            rng = np.random.default_rng(0)
            for _ in range(self.HALF_STARTS):
                half = rng.random(len(y)) < 0.5
                starts.append(fit_min_of_linear(f[half], y[half]))
        best, best_score = None, (-1.0, 0.0)
        for w0 in starts:
            w, pick = refine_by_error(f, y, w0)
            gated = self._gated(x, w, pick, self.GATE_LEAVES)
            slots = np.array([gated["candidates"][tree_predict(gated["gate"], r)] for r in x])
            rel = np.einsum("nf,nf->n", f[np.arange(len(y)), slots], w[slots]) / y - 1
            score = (float(np.mean(np.abs(rel) <= 0.1)), -float(np.mean(rel ** 2)))  # ties: the smaller error
            if score > best_score:
                best, best_score = ((x, w, pick), gated), score
        assert best is not None
        return best, best_score

    @staticmethod
    def _gated(x: np.ndarray, w: np.ndarray, pick: np.ndarray, leaves: int) -> dict[str, Any]:
        gate = fit_tree(x, pick, leaves)
        used = sorted({int(node[1]) for node in gate if node[0] < 0})
        for node in gate:  # leaves name positions in the kept candidates; thresholds kept to 4 digits
            if node[0] < 0:
                node[1] = used.index(int(node[1]))
            else:
                node[1] = float(f"{node[1]:.4g}")
        return {"candidates": used, "coef_ms": [_compact(row) for row in _significant(w[used])],
                "gate": [_compact(node) for node in gate]}

    def fit(self, configs: Sequence[OpConfig], times_ms: Sequence[float]) -> "AnalyticPredictor":
        y = _targets(configs, times_ms)
        _check_family(self.kind, self.family, configs)
        names = [regime(c, self.hw) for c in configs]
        counts = {n: names.count(n) for n in set(names)}
        fits = {}
        for name in sorted(n for n, k in counts.items() if k >= (self.OWN_MIN_SAMPLES if self._own(n) else self.MIN_SAMPLES)):
            mine = [i for i, n in enumerate(names) if n == name]
            fits[name] = self._fit_regime([configs[i] for i in mine], y[mine], name)
        # a variant without a model of its own takes its kind's (all the kind's variants pooled)
        kinds = [self._kind(n) for n in names]
        for kind in sorted({k for k in kinds if k is not None}):
            mine = [i for i, k in enumerate(kinds) if k == kind]
            if any(names[i] not in fits for i in mine) and len(mine) >= self.OWN_MIN_SAMPLES:
                fits[kind] = self._fit_regime([configs[i] for i in mine], y[mine], kind)
                counts[kind] = len(mine)
        if not fits:
            fits["all"] = self._fit_regime(configs, y, "all")
        self.default_ = max(fits, key=lambda n: counts.get(n, len(configs)))
        leaves = {name: self.GATE_LEAVES for name in fits}
        self.models_ = {name: gated for name, (_, gated) in fits.items()}
        while body_bytes(self.to_json()) > self.MAX_BYTES:
            name = max(self.models_, key=lambda n: self._gate_size(self.models_[n]))
            if leaves[name] > 2 and self._gate_size(self.models_[name]) > 1:
                leaves[name] -= 2
                self.models_[name] = {**self.models_[name], **self._gated(*fits[name][0], leaves[name])}
            elif len(self.models_) > 1:  # no gate left to shrink: the rarest regime goes to the default
                del self.models_[min((n for n in self.models_ if n != self.default_), key=lambda n: counts[n])]
            else:
                break
        return self

    def predict(self, configs: Sequence[OpConfig]) -> np.ndarray:
        """Predicted latency in ms of each config."""
        if not hasattr(self, "models_"):
            raise CodlError(f"this {self.kind} predictor is not fitted")
        _check_family(self.kind, self.family, configs)
        out = np.empty(len(configs))
        for i, c in enumerate(configs):
            model = self._model_for(regime(c, self.hw))
            rows = features(c, self._hw_of(model))
            if isinstance(model, list):  # one kernel, its tiling known: [slots, *coefficients in us]
                out[i] = sum(a * b for a, b in zip(rows[0], model[1:])) / 1e3
                continue
            slot = tree_predict(model["gate"], gate_features(c))
            out[i] = sum(a * b for a, b in zip(rows[model["candidates"][slot]], model["coef_ms"][slot]))
        return out

    def _model_for(self, name: str) -> dict[str, Any] | list[float]:
        """The model of regime ``name``; for a regime without one (too few training
        samples, or dropped for size), its kind's pooled model (own kernels, where
        fitted), else the regime whose name shares the longest start with it (the same
        kind of op, then the same tile rows), the default regime breaking ties."""
        if name in self.models_:
            return self.models_[name]
        if self._kind(name) in self.models_:
            return self.models_[self._kind(name)]
        own = [n for n in self.models_ if self._single(n)]
        if not self._single(name) or not own:
            return self.models_[self.default_]
        return self.models_[max(own, key=lambda n: (len(os.path.commonprefix([n, name])), n == self.default_, n))]

    def to_json(self) -> dict[str, Any]:
        return {**artifact_header("predictor"), "predictor": self.kind, "family": self.family,
                "hardware": self.hw.to_json(), "features": list(self.feature_names), "default": self.default_,
                "coef_ms": self.models_}

    def save(self, path: str) -> None:
        _save(self, path)

    def _load(self, data: dict[str, Any]) -> bool:
        """Take the fitted state from a saved model; False if it does not fit this version."""
        models, default = data["coef_ms"], data["default"]
        n_cand, n_feat = len(self.hw.candidates), len(self.feature_names)
        for name, m in models.items():
            _check_coefs(m[1:] if isinstance(m, list) else m["coef_ms"], f"model {name!r}")
            if isinstance(m, list):  # one kernel's model: [slots or a CPU path's L3 in KiB, *coefficients]
                least = (self.hw.l2_bytes >> 10) + 1 if self.hw.cpu_paths else 1  # models before the L3 was fitted: [1, ...]
                if not (self.hw.own or self.hw.cpu_paths) or len(m) != n_feat + 1 or int(m[0]) < least:
                    return False
                continue
            used, coef, gate = m["candidates"], m["coef_ms"], m["gate"]
            if ("slots" in m  # an own-kernel variant in the earlier gated format: refit
                    or len(coef) != len(used) or any(len(r) != n_feat for r in coef)
                    or any(not 0 <= int(u) < n_cand for u in used)
                    or any((len(n) != 2 or not 0 <= int(n[1]) < len(used)) if n[0] < 0 else len(n) != 4 for n in gate)):
                return False
        if default not in models:
            return False
        self.models_, self.default_ = models, default
        return True


class FlopsPredictor(_LinearLatencyModel):
    kind = "flops"

    def _features(self, config: OpConfig) -> list[float]:
        return [float(config.macs), 1.0]

    @property
    def feature_names(self) -> tuple[str, ...]:
        return ("macs", "dispatch")


PREDICTORS: dict[str, Any] = {p.kind: p for p in (AnalyticPredictor, FlopsPredictor)}


def _check_coefs(values: Any, where: str) -> None:
    """Fitted coefficients are finite and non-negative (NNLS): anything else would predict
    NaN or negative times."""
    a = np.asarray(values, dtype=np.float64)
    if not np.all(np.isfinite(a)) or np.any(a < 0):
        raise CodlError(f"malformed predictor file: {where} has coefficients that are not finite and "
                        f"non-negative ({a.ravel()[~(np.isfinite(a.ravel()) & (a.ravel() >= 0))][:3].tolist()})")


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
        model = cls(data["family"], HardwareParams.from_json(data["hardware"]))
        if isinstance(model, AnalyticPredictor):
            ok = model._load(data)
        else:
            coef = np.asarray(data["coef_ms"], dtype=np.float64)
            _check_coefs(coef, "coef_ms")
            ok = coef.shape == (len(model.feature_names),)
            model.coef_ = coef
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise CodlError(f"malformed predictor file: {e}") from None
    if not ok or list(data.get("features", [])) != list(model.feature_names):
        raise CodlError(f"predictor features {data.get('features')} do not match this version's "
                        f"{list(model.feature_names)}")
    return model
