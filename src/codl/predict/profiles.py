"""A profile as the predictors see it: each measured sample's config (through the one
feature path, :func:`codl.predict.features.config_of`), and one predictor fitted per op
family (what ``codl predictor fit`` saves).

Example::

    rows = profile_configs(path)                        # (base key, OpConfig, ms)
    models = fit_per_family(rows, processor_description, "analytic")
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from ..errors import CodlError
from ..profile import Sample, load_profile
from .analytic import AnalyticPredictor
from .evaluate import hardware_candidates
from .features import OpConfig, config_of
from .forest import ForestPredictor
from .linear_model import FlopsPredictor

PREDICTORS = ("analytic", "flops", "forest")


def sample_config(sample: Sample) -> OpConfig:
    """The predictor's view of a profile sample: its one-node graph (shapes only) as
    :func:`config_of` describes it."""
    g = sample.graph(seed=None)
    return config_of(g, g.nodes[0])


def profile_configs(path: Path) -> list[tuple[str, OpConfig, float]]:
    """(base key, config, median ms over the passes) of every sample of a profile."""
    return [(base, sample_config(sample), ms) for base, sample, ms in load_profile(path)]


def fit_per_family(rows: Sequence[tuple[str, OpConfig, float]], processor: dict[str, Any],
                   predictor: str = "analytic", seed: int = 0) -> dict[str, Any]:
    """One ``predictor`` (one of ``PREDICTORS``) per op family of ``rows``, fitted on all
    of the family's samples, by family name. ``processor``: the processor the profile
    measured, as :meth:`codl.processors.Processor.describe` records it."""
    if predictor not in PREDICTORS:
        raise CodlError(f"unknown predictor {predictor!r} (supported: {', '.join(PREDICTORS)})")
    models: dict[str, Any] = {}
    for family in sorted({c.family for _, c, _ in rows}):
        configs = [c for _, c, _ in rows if c.family == family]
        times = [t for _, c, t in rows if c.family == family]
        if predictor == "analytic":
            models[family] = AnalyticPredictor(family, hardware_candidates(processor)).fit(configs, times)
        elif predictor == "flops":
            models[family] = FlopsPredictor(family).fit(configs, times)
        else:
            models[family] = ForestPredictor(family, seed=seed).fit(configs, times)
    return models
