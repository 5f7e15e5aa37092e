"""The papers' hyperparameters are the defaults, checked through one step whose result is known by hand.

ACE: ρ = 1 in all experiments (SPEC §2.2). CR: Lie-derivative penalty weight 0.01 (SPEC §2.3).
"""

import torch

import constrained_eq as ceq
from constrained_eq.testing.toy_problems import VectorModel


def test_resilient_without_rho_uses_ace_rho_one():
    """u⁰ = 0.5, λ⁰ = 0.2, η_p = 0.1 and ρ = 1: u⁺ = 0.5 − 0.1 (1·0.5 − 0.2) = 0.47."""
    model = VectorModel(1, torch.tensor([0.3], dtype=torch.float64))
    target = ceq.Target(lambda m, b, o: m.x, "g", needs_batch=False, variables=lambda m: [m.x])
    problem = ceq.ConstrainedProblem(lambda out, batch: 0.0 * out.sum(), [ceq.Equality(target)])
    solver = ceq.Solver(problem, model, "resilient", variable_lr=0.1, dual_lr=0.1)
    with torch.no_grad():
        dict(solver.cmp.named_multipliers())["equality_g"].weight.fill_(0.2)
        solver.slacks["equality_g"].fill_(0.5)
    record = solver.step(None)
    torch.testing.assert_close(record.slacks["equality_g"], torch.tensor([0.47], dtype=torch.float64))


def test_lie_derivative_penalty_weight_is_cr_one_hundredth():
    assert ceq.LieDerivative().weight == 0.01
