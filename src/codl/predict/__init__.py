"""Latency predictors fitted on measurements (the profiler comes next)."""

from .features import FAMILIES, HardwareParams, OpConfig, config_of, feature_names, features
from .forest import ForestPredictor
from .linear_model import AnalyticPredictor, FlopsPredictor, load_predictor, nnls_relative

__all__ = ["FAMILIES", "HardwareParams", "OpConfig", "config_of", "feature_names", "features",
           "AnalyticPredictor", "FlopsPredictor", "ForestPredictor", "load_predictor", "nnls_relative"]
