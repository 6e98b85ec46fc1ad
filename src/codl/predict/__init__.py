"""Latency predictors fitted on profiled measurements (:mod:`codl.profile`): the analytic
model, a FLOPs-linear baseline and a random forest, judged alike by :mod:`.evaluate`."""

from .analytic import AnalyticPredictor, RegimeModel
from .features import (
           FAMILIES,
           OpConfig,
           config_of,
           feature_names,
           feature_row,
           features,
           regime,
)
from .forest import ForestPredictor
from .hardware import CpuParams, GpuParams, HardwareParams
from .linear_model import FlopsPredictor, load_predictor
from .nnls import nnls_relative

__all__ = ["FAMILIES", "CpuParams", "GpuParams", "HardwareParams", "OpConfig", "config_of", "feature_names",
           "feature_row", "features", "regime", "AnalyticPredictor", "RegimeModel", "FlopsPredictor",
           "ForestPredictor", "load_predictor", "nnls_relative"]
