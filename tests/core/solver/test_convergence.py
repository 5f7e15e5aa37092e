"""Convergence to closed-form KKT points (float64).

The property tests run a few examples by default and many under ``-m slow`` (same check).
"""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import constrained_eq as ceq
from constrained_eq.testing.toy_problems import (
    VectorModel,
    projection_problem,
    projection_solution,
    resilient_scalar_problem,
)


def _run(problem, n, formulation="lagrangian", steps=600, lr=0.3, dual_lr=0.3, scheme="simultaneous", **kwargs):
    model = VectorModel(n, torch.zeros(n, dtype=torch.float64))
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    if scheme == "extrapolation":
        optimizer = ceq_extra_sgd(model.parameters(), lr=lr)
    solver = ceq.Solver(problem, model, formulation, optimizer, dual_lr, constrained_optimizer=scheme, **kwargs)
    for _ in range(steps):
        record = solver.step(None)
    return model.x.detach(), record


def ceq_extra_sgd(params, lr):
    import cooper

    return cooper.optim.ExtraSGD(params, lr=lr)


problems = st.integers(3, 6).flatmap(
    lambda n: st.tuples(
        st.lists(st.floats(-2, 2), min_size=n, max_size=n),
        st.permutations(list(range(n))),
        st.integers(1, 2),
        st.lists(st.floats(-1, 1), min_size=2, max_size=2),
    )
)


def check_projection_kkt(spec):
    a, order, n_eq, b = spec
    a = torch.tensor(a, dtype=torch.float64)
    eq_idx, ineq_idx = order[:n_eq], order[n_eq:n_eq + 2]
    b = torch.tensor(b[: len(ineq_idx)], dtype=torch.float64)
    x, record = _run(projection_problem(a, eq_idx, ineq_idx, b), len(a))
    x_star, lam_star, mu_star = projection_solution(a, eq_idx, ineq_idx, b)
    torch.testing.assert_close(x, x_star, atol=1e-6, rtol=0)
    # Stationarity x − a + λ = 0 on S gives λ* = a_S ... with our sign convention (L = J0 + λᵀh).
    torch.testing.assert_close(record.multipliers["equality_x_s"], lam_star, atol=1e-6, rtol=0)
    if len(ineq_idx):
        torch.testing.assert_close(record.multipliers["inequality_x_t_minus_b"], mu_star, atol=1e-6, rtol=0)


@settings(max_examples=4)
@given(problems)
def test_kkt_point_of_projection_problem(spec):
    check_projection_kkt(spec)


@pytest.mark.slow
@settings(max_examples=30)
@given(problems)
def test_kkt_point_of_projection_problem_many_examples(spec):
    check_projection_kkt(spec)


@pytest.mark.parametrize("scheme", ["simultaneous", "alternating_primal_dual", "alternating_dual_primal",
                                    "extrapolation"])
def test_every_cooper_scheme_reaches_the_kkt_point(scheme):
    a = torch.tensor([1.0, -2.0, 0.5, 3.0], dtype=torch.float64)
    b = torch.tensor([0.2], dtype=torch.float64)
    x, record = _run(projection_problem(a, [0], [3], b), 4, scheme=scheme, steps=800)
    x_star, lam_star, mu_star = projection_solution(a, [0], [3], b)
    torch.testing.assert_close(x, x_star, atol=1e-6, rtol=0)
    torch.testing.assert_close(record.multipliers["inequality_x_t_minus_b"], mu_star, atol=1e-6, rtol=0)


def check_resilient_kkt(a, rho):
    x, record = _run(resilient_scalar_problem(a, rho), 1, steps=1500, lr=0.2, dual_lr=0.2)
    u, lam = record.slacks["resilient_x"], record.multipliers["resilient_x"]
    assert x.item() == pytest.approx(a / (1 + rho), abs=1e-5)
    assert u.item() == pytest.approx(a / (1 + rho), abs=1e-5)
    assert lam.item() == pytest.approx(rho * a / (1 + rho), abs=1e-5)
    assert u.item() == pytest.approx(lam.item() / rho, abs=1e-5)


@settings(max_examples=3)
@given(a=st.floats(0.2, 3), rho=st.floats(0.3, 3))
def test_resilient_scalar_kkt_point(a, rho):
    check_resilient_kkt(a, rho)


@pytest.mark.slow
@settings(max_examples=30)
@given(a=st.floats(0.2, 3), rho=st.floats(0.3, 3))
def test_resilient_scalar_kkt_point_many_examples(a, rho):
    check_resilient_kkt(a, rho)


def check_multiplier_scaling(c, a0):
    a = torch.tensor([a0, -1.0, 2.0], dtype=torch.float64)
    b = torch.tensor([0.5], dtype=torch.float64)
    lr = 0.3 / c
    _, base = _run(projection_problem(a, [0], [2], b), 3, lr=0.3, dual_lr=0.3, steps=800)
    _, scaled = _run(projection_problem(a, [0], [2], b, scale=c), 3, lr=lr, dual_lr=0.3 * c, steps=800)
    for key in base.multipliers:
        torch.testing.assert_close(scaled.multipliers[key], c * base.multipliers[key], atol=1e-5, rtol=1e-5)


@settings(max_examples=3)
@given(c=st.floats(0.2, 5), a0=st.floats(0.3, 2))
def test_scaling_the_objective_scales_the_multipliers(c, a0):
    check_multiplier_scaling(c, a0)


@pytest.mark.slow
@settings(max_examples=30)
@given(c=st.floats(0.2, 5), a0=st.floats(0.3, 2))
def test_scaling_the_objective_scales_the_multipliers_many_examples(c, a0):
    check_multiplier_scaling(c, a0)


def test_augmented_lagrangian_reaches_the_same_kkt_point():
    a = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
    b = torch.tensor([0.2], dtype=torch.float64)
    x, record = _run(projection_problem(a, [0], [2], b), 3, "augmented_lagrangian", steps=800, penalty_coefficient=1.0)
    x_star, lam_star, mu_star = projection_solution(a, [0], [2], b)
    torch.testing.assert_close(x, x_star, atol=1e-6, rtol=0)
    torch.testing.assert_close(record.multipliers["equality_x_s"], lam_star, atol=1e-6, rtol=0)
