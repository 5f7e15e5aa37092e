"""The resilient formulation (ACE Algorithm 2): every hard constraint gets a learnable slack.

``Equality`` h = 0 becomes |h| ≤ u and ``Inequality`` g ≤ b becomes g − b ≤ u, with u ≥ 0 and a
cost ρ/2 ‖u‖²:

.. math::
    \\mathcal{L}(\\theta, u, \\lambda) = J_0(\\theta) + \\tfrac{\\rho}{2}\\|u\\|^2 + \\lambda^\\top (|h(\\theta)| - u),
    \\qquad \\lambda \\ge 0

One simultaneous step with plain gradient steps is (the slack step is gradient *descent*; ACE's
Alg. 2 prints a "+" there, which would make u diverge):

.. math::
    \\gamma^{+} = \\gamma - \\eta_p (\\nabla_\\gamma J_0 + \\lambda \\odot \\mathrm{sign}(\\gamma)), \\quad
    u^{+} = [u - \\eta_p (\\rho u - \\lambda)]_+, \\quad
    \\lambda^{+} = [\\lambda + \\eta_d (|\\gamma| - u)]_+

At a KKT point u* = λ*/ρ.
"""

from __future__ import annotations

from constrained_eq.core.formulations.base import ConstraintPlan, check_positive, hard_plan, penalty_plan
from constrained_eq.core.formulations.lagrangian import Lagrangian
from constrained_eq.core.problem.constraints import Constraint, Penalty

__all__ = ["ResilientLagrangian"]


class ResilientLagrangian(Lagrangian):
    """Lagrangian on slack-relaxed constraints.

    Args:
        rho (float, optional): Slack cost ρ > 0 for constraints declared hard (default: :obj:`1.0`,
            as in all ACE experiments). Declared ``Resilient`` constraints keep their own ρ.
    """

    name = "resilient"
    expects_slack = True

    def __init__(self, rho: float = 1.0) -> None:
        self.rho = check_positive(rho, "rho", "ResilientLagrangian")

    def options(self) -> dict:
        return {"rho": self.rho}

    def plan(self, constraint: Constraint) -> ConstraintPlan:
        if isinstance(constraint, Penalty):
            return penalty_plan(constraint)
        return hard_plan(constraint, resilient_rho=self.rho)
