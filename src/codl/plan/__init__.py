"""Plans: how each node is shared between the two processors, the cost model the
planners call, the planners, and a plan's predicted latency."""

from .cost import CostModel, CostModelError, Link, NodeCost
from .random import random_plan, split_dims
from .search import COSTS, STRATEGIES, PlanResult, make_plan, oracle_plan, plan_graph
from .simulate import Prediction, predict_plan
from .types import Placement, Plan, PlanError, verify_plan

__all__ = ["Placement", "Plan", "PlanError", "verify_plan", "random_plan", "split_dims", "CostModel",
           "CostModelError", "Link", "NodeCost", "COSTS", "STRATEGIES", "PlanResult", "make_plan", "oracle_plan",
           "plan_graph", "Prediction", "predict_plan"]
