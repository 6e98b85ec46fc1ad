"""Held-out evaluation of the predictors on a profile, the same way for every model:
share of predictions within +-5/10/15% of the measured median, RMSPE, model size, and
time per prediction.

Samples are split by their base op (an op and all its partial shares fall on the same
side), so a predictor is judged on ops it never saw.
"""

from __future__ import annotations

import random
import time
from typing import Any, Sequence

import numpy as np

from ..errors import CodlError
from ..ir.graph import DType
from .analytic import AnalyticPredictor, body_bytes
from .features import OpConfig
from .forest import ForestPredictor
from .hardware import CpuParams, GpuParams, Hardware
from .linear_model import FlopsPredictor

# cache sizes (per-core L2, shared L3) tried for a CPU profile that does not record its own
CACHE_CANDIDATES = tuple((l2 << 20, l3 << 20) for l2 in (1, 2) for l3 in (16, 32, 64))


def hardware_candidates(processor: dict) -> list[Hardware]:
    """The processor parameters the analytic model may assume (as
    ``Processor.describe()`` or a profile's settings record the processor); fitting
    keeps the one that explains the training data best. GPUs: one, running codl's own
    kernels (library kernels choose their tiles by shape, out of the model's sight: a
    ``CodlError``). CPUs: the PyTorch paths' model (with codl's own conv path where the
    profile ran it) with the caches the profile recorded, or, for a profile that did
    not record them, each of ``CACHE_CANDIDATES``."""
    if processor["device"] == "cpu":
        caches = ([(int(processor["l2_bytes"]), int(processor["l3_bytes"]))] if "l3_bytes" in processor
                  else CACHE_CANDIDATES)
        dtype = DType(processor.get("dtype", "float32"))
        return [CpuParams(threads=int(processor["threads"]), own=processor.get("kernels") == "codl", l2_bytes=l2,
                          l3_bytes=l3, elem_bytes=dtype.itemsize, native_conv=dtype is DType.FLOAT32)
                for l2, l3 in caches]
    if processor.get("kernels") != "codl":
        raise CodlError("the analytic predictor models codl's own GPU kernels only: profile with --own-kernels "
                        "(library kernels choose their tiles by shape; docs/results/predictor.md)")
    return [GpuParams(sms=int(processor.get("sm_limit") or processor.get("sms") or 1))]


def score(pred: np.ndarray, true: np.ndarray) -> dict[str, float]:
    rel = np.abs(pred - true) / true
    return {"within_5": float(np.mean(rel <= 0.05)), "within_10": float(np.mean(rel <= 0.10)),
            "within_15": float(np.mean(rel <= 0.15)), "rmspe": float(np.sqrt(np.mean(rel ** 2)))}


def model_size_bytes(model: Any) -> int:
    """Bytes of the JSON a model needs to predict (without the artifact header)."""
    return body_bytes(model.to_json())


def forest_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("sklearn") is not None


def us_per_prediction(model: Any, config: OpConfig, n: int = 500) -> float:
    start = time.perf_counter()
    for _ in range(n):
        model.predict([config])
    return (time.perf_counter() - start) / n * 1e6


def fit_predictors(family: str, configs: Sequence[OpConfig], times: Sequence[float], processor: dict,
                   seed: int = 0) -> dict[str, Any]:
    """The predictors compared side by side, fitted on ``configs``: analytic, flops and,
    where scikit-learn is installed, forest."""
    models: dict[str, Any] = {"analytic": AnalyticPredictor(family, hardware_candidates(processor)).fit(configs, times),
                              "flops": FlopsPredictor(family).fit(configs, times)}
    if forest_available():
        models["forest"] = ForestPredictor(family, seed=seed).fit(configs, times)
    return models


def evaluate(rows: Sequence[tuple[str, OpConfig, float]], processor: dict, seed: int = 0,
             test_share: float = 0.3, model_ops: frozenset[str] = frozenset()) -> dict[str, dict[str, dict[str, float]]]:
    """rows: (base key, config, measured ms); processor: its description (see
    ``hardware_candidates``). Returns {family: {predictor: metrics}}; with
    ``model_ops`` (base keys of real networks' ops), also the +-10% share on the test
    ops among them (``within_10_model_ops``, with their count ``n_model_ops``)."""
    results: dict[str, dict[str, dict[str, float]]] = {}
    for family in sorted({c.family for _, c, _ in rows}):
        fam = [(b, c, t) for b, c, t in rows if c.family == family]
        bases = sorted({b for b, _, _ in fam})
        random.Random(seed).shuffle(bases)
        test_bases = set(bases[:max(1, int(len(bases) * test_share))])
        train = [(c, t) for b, c, t in fam if b not in test_bases]
        test = [(c, t) for b, c, t in fam if b in test_bases]
        real = np.array([b in model_ops for b, _, _ in fam if b in test_bases])
        if len(train) < 5 or not test:
            continue
        tc, tt = [c for c, _ in train], [t for _, t in train]
        ec, et = [c for c, _ in test], np.array([t for _, t in test])
        models = fit_predictors(family, tc, tt, processor, seed)
        results[family] = {}
        for name, model in models.items():
            pred = model.predict(ec)
            results[family][name] = {**score(pred, et), "size_bytes": model_size_bytes(model),
                                     "us_per_prediction": us_per_prediction(model, ec[0]),
                                     "n_train": len(train), "n_test": len(test)}
            if real.any():
                results[family][name].update(within_10_model_ops=score(pred[real], et[real])["within_10"],
                                             n_model_ops=int(real.sum()))
    return results


def evaluate_splits(rows: Sequence[tuple[str, OpConfig, float]], processor: dict, seeds: Sequence[int],
                    test_share: float = 0.3, model_ops: frozenset[str] = frozenset()) -> dict[str, dict[str, dict[str, float]]]:
    """:func:`evaluate` over several random splits (one per seed): each metric's mean,
    with the lowest and highest +-10% share (``within_10_min`` / ``within_10_max``). A
    single split can move the +-10% share by several points."""
    runs = [evaluate(rows, processor, seed, test_share, model_ops) for seed in seeds]
    out: dict[str, dict[str, dict[str, float]]] = {}
    for family, models in runs[0].items():
        out[family] = {}
        for name in models:
            per = [r[family][name] for r in runs if name in r.get(family, {})]
            mean = {k: float(np.mean([p[k] for p in per if k in p])) for k in dict.fromkeys(k for p in per for k in p)}
            mean.update(within_10_min=min(p["within_10"] for p in per), within_10_max=max(p["within_10"] for p in per),
                        splits=len(per))
            out[family][name] = mean
    return out
