"""Execution of graphs: the single-processor reference runner, and co-execution of a plan
on two processors (:mod:`codl.runtime.session`)."""

from .reference import ReferenceRunner, random_inputs

__all__ = ["ReferenceRunner", "random_inputs"]
