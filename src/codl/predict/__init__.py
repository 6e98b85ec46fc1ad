"""Latency predictors fitted on profiled measurements (:mod:`codl.profile`): the analytic
model, a FLOPs-linear baseline and a random forest, judged alike by :mod:`.evaluate`."""

from .features import FAMILIES, HardwareParams, OpConfig, config_of, feature_names, features
from .forest import ForestPredictor
from .linear_model import AnalyticPredictor, FlopsPredictor, load_predictor, nnls_relative

__all__ = ["FAMILIES", "HardwareParams", "OpConfig", "config_of", "feature_names", "features",
           "AnalyticPredictor", "FlopsPredictor", "ForestPredictor", "load_predictor", "nnls_relative"]
