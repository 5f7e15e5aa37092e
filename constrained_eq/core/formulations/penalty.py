"""The fixed quadratic penalty formulation: no multipliers.

.. math::
    J_0(\\theta) + \\tfrac{c}{2}\\|h(\\theta)\\|^2
    \\quad\\text{or}\\quad J_0(\\theta) + \\tfrac{c}{2}\\|[g(\\theta) - b]_+\\|^2
"""

from __future__ import annotations

from typing import Any

import cooper
import torch

from constrained_eq.core.formulations.base import ConstraintPlan, Formulation, check_positive
from constrained_eq.core.formulations.updaters import resolve_penalty_updater

__all__ = ["QuadraticPenalty"]


class QuadraticPenalty(Formulation):
    """A quadratic penalty of coefficient ``c`` on every hard constraint (fixed, or grown by an updater).

    Args:
        coefficient (float, optional): c > 0, its initial value under an updater (default: :obj:`1.0`).
        penalty_updater (str, mapping or PenaltyUpdater, optional): ``"multiplicative"``, ``"additive"``
            or ``{"name": ..., <options>}`` (see :mod:`constrained_eq.core.formulations.updaters`); a fixed
            c leaves an O(1/c) violation, a growing one drives it to 0 (default: none, c fixed).
    """

    name = "penalty"
    signature = "penalised"

    def __init__(self, coefficient: float = 1.0, penalty_updater: Any = None) -> None:
        self.coefficient = check_positive(coefficient, "coefficient", "QuadraticPenalty")
        self.penalty_updater = resolve_penalty_updater(penalty_updater)

    def options(self) -> dict:
        return {"coefficient": self.coefficient,
                **({"penalty_updater": self.penalty_updater} if self.penalty_updater else {})}

    def build(self, plan: ConstraintPlan, num_constraints: int, device: torch.device, dtype: torch.dtype
              ) -> cooper.Constraint:
        coefficient = cooper.penalty_coefficients.DensePenaltyCoefficient(
            torch.full((num_constraints,), self.coefficient, device=device, dtype=dtype)
        )
        return cooper.Constraint(plan.constraint_type, cooper.formulations.QuadraticPenalty,
                                 penalty_coefficient=coefficient)
