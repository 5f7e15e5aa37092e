"""No formulation: the objective alone (vanilla training). Every constraint and penalty is ignored."""

from __future__ import annotations

from constrained_eq.core.formulations.base import ConstraintPlan, SoftFormulation
from constrained_eq.core.problem.constraints import Constraint

__all__ = ["Unconstrained"]


class Unconstrained(SoftFormulation):
    """Train on J_0 only; constraints are still evaluated and logged, never enforced."""

    name = "none"
    signature = "free"

    def plan(self, constraint: Constraint) -> ConstraintPlan:
        return ConstraintPlan(constraint.key, constraint, "ignore")
