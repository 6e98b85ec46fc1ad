"""Plans: how each node is shared between the two processors (planners come later)."""

from .random import random_plan, split_dims
from .types import Placement, Plan, PlanError, verify_plan

__all__ = ["Placement", "Plan", "PlanError", "verify_plan", "random_plan", "split_dims"]
