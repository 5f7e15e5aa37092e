"""The augmented Lagrangian formulation.

.. math::
    \\mathcal{L}_c(\\theta, \\lambda) = J_0(\\theta) + \\lambda^\\top h(\\theta) + \\tfrac{c}{2} \\|h(\\theta)\\|^2

for equalities, and Cooper's (Nocedal & Wright 17.65) form for inequalities. The dual step is
λ⁺ = λ + η_d h(θ) (projected on λ ≥ 0 for inequalities).
"""

from __future__ import annotations

import cooper
import torch

from constrained_eq.formulations.base import ConstraintPlan, Formulation, check_positive

__all__ = ["AugmentedLagrangian"]


class AugmentedLagrangian(Formulation):
    """Multipliers plus a quadratic penalty of fixed coefficient ``c``.

    Args:
        penalty_coefficient (float, optional): c > 0 (default: :obj:`1.0`).
    """

    name = "augmented_lagrangian"
    expects_multiplier = True

    def __init__(self, penalty_coefficient: float = 1.0) -> None:
        self.penalty_coefficient = check_positive(penalty_coefficient, "penalty_coefficient", "AugmentedLagrangian")

    def options(self) -> dict:
        return {"penalty_coefficient": self.penalty_coefficient}

    def build(self, plan: ConstraintPlan, num_constraints: int, device: torch.device, dtype: torch.dtype
              ) -> cooper.Constraint:
        multiplier = cooper.multipliers.DenseMultiplier(num_constraints=num_constraints, device=device, dtype=dtype)
        coefficient = cooper.penalty_coefficients.DensePenaltyCoefficient(
            torch.full((num_constraints,), self.penalty_coefficient, device=device, dtype=dtype)
        )
        return cooper.Constraint(
            plan.constraint_type, cooper.formulations.AugmentedLagrangian, multiplier=multiplier,
            penalty_coefficient=coefficient,
        )
