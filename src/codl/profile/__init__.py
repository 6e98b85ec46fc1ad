"""Profiling: op samples measured on each processor into a resumable dataset."""

from .measure import load_passes, load_profile, noise_floor, profile_path, run_profile
from .sampling import Sample, conv_parts, linear_parts, model_samples, perturbed_samples, random_samples

__all__ = ["Sample", "conv_parts", "linear_parts", "model_samples", "perturbed_samples", "random_samples", "run_profile",
           "profile_path", "load_profile", "load_passes", "noise_floor"]
