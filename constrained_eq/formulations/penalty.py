"""The fixed quadratic penalty formulation: no multipliers.

.. math::
    J_0(\\theta) + \\tfrac{c}{2}\\|h(\\theta)\\|^2
    \\quad\\text{or}\\quad J_0(\\theta) + \\tfrac{c}{2}\\|[g(\\theta) - b]_+\\|^2
"""

from __future__ import annotations

import cooper
import torch

from constrained_eq.formulations.base import ConstraintPlan, Formulation, check_positive

__all__ = ["QuadraticPenalty"]


class QuadraticPenalty(Formulation):
    """A fixed quadratic penalty of coefficient ``c`` on every hard constraint.

    Args:
        coefficient (float, optional): c > 0 (default: :obj:`1.0`).
    """

    name = "penalty"

    def __init__(self, coefficient: float = 1.0) -> None:
        self.coefficient = check_positive(coefficient, "coefficient", "QuadraticPenalty")

    def options(self) -> dict:
        return {"coefficient": self.coefficient}

    def build(self, plan: ConstraintPlan, num_constraints: int, device: torch.device, dtype: torch.dtype
              ) -> cooper.Constraint:
        coefficient = cooper.penalty_coefficients.DensePenaltyCoefficient(
            torch.full((num_constraints,), self.coefficient, device=device, dtype=dtype)
        )
        return cooper.Constraint(plan.constraint_type, cooper.formulations.QuadraticPenalty,
                                 penalty_coefficient=coefficient)
