"""The Lagrangian formulation (ACE Algorithm 1 for equalities).

.. math::
    \\mathcal{L}(\\theta, \\lambda) = J_0(\\theta) + \\lambda^\\top h(\\theta)

With plain gradient steps (the default), one simultaneous step is

.. math::
    \\theta^{+} = \\theta - \\eta_p \\nabla_\\theta (J_0 + \\lambda^\\top h), \\qquad
    \\lambda^{+} = \\lambda + \\eta_d\\, h(\\theta)

and for an inequality g ≤ b the dual step is projected: λ⁺ = [λ + η_d (g(θ) − b)]₊.
A declared ``Resilient`` constraint keeps its slack under this formulation.
"""

from __future__ import annotations

import cooper
import torch

from constrained_eq.core.formulations.base import ConstraintPlan, Formulation

__all__ = ["Lagrangian"]


class Lagrangian(Formulation):
    """Lagrange multipliers, one dense vector per constraint, stepped by the dual optimizer."""

    name = "lagrangian"
    expects_multiplier = True

    def build(self, plan: ConstraintPlan, num_constraints: int, device: torch.device, dtype: torch.dtype
              ) -> cooper.Constraint:
        multiplier = cooper.multipliers.DenseMultiplier(num_constraints=num_constraints, device=device, dtype=dtype)
        return cooper.Constraint(plan.constraint_type, cooper.formulations.Lagrangian, multiplier=multiplier)
