"""The augmented Lagrangian formulation.

.. math::
    \\mathcal{L}_c(\\theta, \\lambda) = J_0(\\theta) + \\lambda^\\top h(\\theta) + \\tfrac{c}{2} \\|h(\\theta)\\|^2

for equalities, and Cooper's (Nocedal & Wright 17.65) form for inequalities. The dual step is
λ⁺ = λ + η_d h(θ) (projected on λ ≥ 0 for inequalities).
"""

from __future__ import annotations

from typing import Any

import cooper
import torch

from constrained_eq.core.formulations.base import ConstraintPlan, Formulation, check_positive
from constrained_eq.core.formulations.updaters import resolve_penalty_updater

__all__ = ["AugmentedLagrangian"]


class AugmentedLagrangian(Formulation):
    """Multipliers plus a quadratic penalty of coefficient ``c`` (fixed, or grown by an updater).

    Args:
        penalty_coefficient (float, optional): c > 0, its initial value under an updater (default: :obj:`1.0`).
        penalty_updater (str, mapping or PenaltyUpdater, optional): ``"multiplicative"``, ``"additive"``
            or ``{"name": ..., <options>}`` (see :mod:`constrained_eq.core.formulations.updaters`); the
            coefficient then grows on violated entries after every step (default: none, c fixed).
    """

    name = "augmented_lagrangian"
    expects_multiplier = True

    def __init__(self, penalty_coefficient: float = 1.0, penalty_updater: Any = None) -> None:
        self.penalty_coefficient = check_positive(penalty_coefficient, "penalty_coefficient", "AugmentedLagrangian")
        self.penalty_updater = resolve_penalty_updater(penalty_updater)

    def options(self) -> dict:
        return {"penalty_coefficient": self.penalty_coefficient,
                **({"penalty_updater": self.penalty_updater} if self.penalty_updater else {})}

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
