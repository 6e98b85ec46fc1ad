"""Compute devices codl runs on; see :mod:`codl.processors.base`."""

from .base import TORCH_DTYPES, Processor, ProcessorKind, default_pair, typed_processor

__all__ = ["Processor", "ProcessorKind", "TORCH_DTYPES", "typed_processor", "default_pair"]
