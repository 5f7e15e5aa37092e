"""ACE Algorithm 2 with the slack step as true gradient descent: u⁺ = [u − η_p(ρu − λ)]₊."""

import torch
from hypothesis import given
from hypothesis import strategies as st

import constrained_eq as ceq
from constrained_eq.testing.toy_problems import VectorModel, resilient_scalar_problem

rates = st.floats(1e-3, 0.5)


def _gamma_model(gamma0):
    """A model with one homotopic layer per γ, whose γ are the constrained variables."""
    target = ceq.Target(lambda m, b, o: m.x, "g", needs_batch=False, variables=lambda m: [m.x])
    return VectorModel(len(gamma0), gamma0), target


def _set(solver, key, lam=None, u=None):
    with torch.no_grad():
        if lam is not None:
            dict(solver.cmp.named_multipliers())[key].weight.copy_(lam)
        if u is not None:
            solver.slacks[key].copy_(u)


@given(
    g0=st.lists(st.floats(-2, 2).filter(lambda v: abs(v) > 1e-3), min_size=1, max_size=4),
    lam0=st.lists(st.floats(0, 2), min_size=1, max_size=4),
    u0=st.lists(st.floats(0, 2), min_size=1, max_size=4),
    rho=st.floats(0.1, 2.0),
    eta_p=rates,
    eta_d=rates,
)
def test_one_step_is_algorithm_2_with_descent_on_u(g0, lam0, u0, rho, eta_p, eta_d):
    n = min(len(g0), len(lam0), len(u0))
    g0, lam0, u0 = (torch.tensor(v[:n], dtype=torch.float64) for v in (g0, lam0, u0))
    model, target = _gamma_model(g0)
    a = torch.full((n,), 0.7, dtype=torch.float64)
    problem = ceq.ConstrainedProblem(lambda out, batch: 0.5 * (out - a).pow(2).sum(), [ceq.Equality(target)])
    solver = ceq.Solver(problem, model, "resilient", variable_lr=eta_p, dual_lr=eta_d, rho=rho)
    _set(solver, "equality_g", lam0, u0)
    record = solver.step(None)
    # γ⁺ = γ − η_p(∂J0/∂γ + λ sign γ)
    torch.testing.assert_close(model.x.detach(), g0 - eta_p * ((g0 - a) + lam0 * g0.sign()), rtol=1e-12, atol=1e-12)
    # u⁺ = [u − η_p(ρu − λ)]₊   (the printed "+" would be gradient ascent)
    torch.testing.assert_close(record.slacks["equality_g"], torch.clamp(u0 - eta_p * (rho * u0 - lam0), min=0),
                               rtol=1e-12, atol=1e-12)
    # λ⁺ = [λ + η_d(|γ| − u)]₊  at the old iterate
    torch.testing.assert_close(record.multipliers["equality_g"], torch.clamp(lam0 + eta_d * (g0.abs() - u0), min=0),
                               rtol=1e-12, atol=1e-12)


@given(a=st.floats(-3, 3), rho=st.floats(0.1, 3), steps=st.integers(1, 40), eta=st.floats(0.05, 0.9))
def test_slacks_and_multipliers_stay_non_negative(a, rho, steps, eta):
    problem = resilient_scalar_problem(a, rho)
    model = VectorModel(1, torch.tensor([1.0], dtype=torch.float64))
    solver = ceq.Solver(problem, model, "lagrangian", torch.optim.SGD(model.parameters(), lr=eta), dual_lr=eta)
    for _ in range(steps):
        record = solver.step(None)
        assert (record.slacks["resilient_x"] >= 0).all()
        assert (record.multipliers["resilient_x"] >= 0).all()


def test_resilient_formulation_relaxes_a_declared_equality():
    model, target = _gamma_model(torch.ones(3, dtype=torch.float64))
    problem = ceq.ConstrainedProblem(lambda out, batch: out.sum(), [ceq.Equality(target)])
    solver = ceq.Solver(problem, model, "resilient", variable_lr=0.1, rho=2.0)
    (plan,) = solver.plans
    assert plan.has_slack and plan.rho == 2.0
    assert set(solver.slacks) == {"equality_g"}
    # Under the plain Lagrangian the same problem has no slack.
    model, target = _gamma_model(torch.ones(3, dtype=torch.float64))
    problem = ceq.ConstrainedProblem(lambda out, batch: out.sum(), [ceq.Equality(target)])
    assert not ceq.Solver(problem, model, "lagrangian", variable_lr=0.1).slacks
