"""Plans: how each node is shared between the two processors (planners come later)."""

from .types import Placement, Plan, PlanError, verify_plan

__all__ = ["Placement", "Plan", "PlanError", "verify_plan"]
