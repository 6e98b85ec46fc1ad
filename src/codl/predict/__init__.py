"""Latency predictors fitted on profiled measurements (:mod:`codl.profile`): the analytic
model, a FLOPs-linear baseline and a random forest, judged alike by :mod:`.evaluate`;
:mod:`.costs` makes the planners' cost model from them."""

from .analytic import AnalyticPredictor, RegimeModel
from .features import (
           FAMILIES,
           OpConfig,
           config_of,
           feature_names,
           feature_row,
           regime,
)
from .forest import ForestPredictor
from .hardware import CpuParams, GpuParams
from .linear_model import FlopsPredictor, load_predictor
from .nnls import nnls_relative

__all__ = ["FAMILIES", "CpuParams", "GpuParams", "OpConfig", "config_of", "feature_names",
           "feature_row", "regime", "AnalyticPredictor", "RegimeModel", "FlopsPredictor",
           "ForestPredictor", "load_predictor", "nnls_relative"]
