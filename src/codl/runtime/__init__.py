"""Execution of graphs: the single-processor reference runner (co-execution comes next)."""

from .reference import ReferenceRunner, random_inputs

__all__ = ["ReferenceRunner", "random_inputs"]
