"""Exact update laws of ACE Algorithm 1 / projected dual ascent, one step at a time (float64)."""

import torch
from hypothesis import given
from hypothesis import strategies as st

import constrained_eq as ceq
from constrained_eq.testing.toy_problems import VectorModel

floats = st.floats(-3, 3, allow_nan=False)
vectors = st.lists(floats, min_size=1, max_size=5)
rates = st.floats(1e-3, 0.5)


def _solver(problem, model, **kwargs):
    return ceq.Solver(problem, model, "lagrangian", torch.optim.SGD(model.parameters(), lr=kwargs.pop("lr")), **kwargs)


def _set_multiplier(solver, key, value):
    with torch.no_grad():
        dict(solver.cmp.named_multipliers())[key].weight.copy_(value)


@given(x0=vectors, a=vectors, lam0=vectors, eta_p=rates, eta_d=rates)
def test_equality_step_is_exactly_gradient_descent_ascent(x0, a, lam0, eta_p, eta_d):
    n = min(len(x0), len(a), len(lam0))
    x0, a, lam0 = (torch.tensor(v[:n], dtype=torch.float64) for v in (x0, a, lam0))
    model = VectorModel(n, x0)
    h = ceq.Target(lambda m, b, o: m.x, "x", needs_batch=False)
    problem = ceq.ConstrainedProblem(lambda out, batch: 0.5 * (out - a).pow(2).sum(), [ceq.Equality(h)])
    solver = _solver(problem, model, lr=eta_p, dual_lr=eta_d)
    _set_multiplier(solver, "equality_x", lam0)
    record = solver.step(None)
    # θ⁺ = θ − η_p (∇J0 + λ),  λ⁺ − λ = η_d h(θ)
    torch.testing.assert_close(model.x.detach(), x0 - eta_p * (x0 - a + lam0), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(record.multipliers["equality_x"] - lam0, eta_d * x0, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(record.violations["equality_x"], x0)


@given(x0=vectors, lam0=st.lists(st.floats(0, 3), min_size=1, max_size=5), bound=st.floats(0, 2), eta_d=rates)
def test_inequality_dual_step_is_projected_ascent(x0, lam0, bound, eta_d):
    n = min(len(x0), len(lam0))
    x0, lam0 = (torch.tensor(v[:n], dtype=torch.float64) for v in (x0, lam0))
    model = VectorModel(n, x0)
    g = ceq.Target(lambda m, b, o: m.x, "x", needs_batch=False)
    problem = ceq.ConstrainedProblem(lambda out, batch: out.pow(2).sum(), [ceq.Inequality(g, bound=bound)])
    solver = _solver(problem, model, lr=0.1, dual_lr=eta_d)
    _set_multiplier(solver, "inequality_x", lam0)
    record = solver.step(None)
    expected = torch.clamp(lam0 + eta_d * (x0 - bound), min=0.0)
    torch.testing.assert_close(record.multipliers["inequality_x"], expected, rtol=1e-12, atol=1e-12)


@given(a=vectors, bound=st.floats(0, 2), steps=st.integers(1, 30))
def test_inequality_multipliers_never_go_negative(a, bound, steps):
    a = torch.tensor(a, dtype=torch.float64)
    model = VectorModel(len(a), a)
    g = ceq.Target(lambda m, b, o: m.x, "x", needs_batch=False)
    problem = ceq.ConstrainedProblem(lambda out, batch: -(out * a).sum(), [ceq.Inequality(g, bound=bound)])
    solver = _solver(problem, model, lr=0.2, dual_lr=0.5)
    for _ in range(steps):
        assert (solver.step(None).multipliers["inequality_x"] >= 0).all()


@given(x=st.lists(st.floats(-3, -0.01), min_size=1, max_size=5), steps=st.integers(1, 20))
def test_multipliers_stay_zero_while_feasible(x, steps):
    x = torch.tensor(x, dtype=torch.float64)
    model = VectorModel(len(x), x)
    g = ceq.Target(lambda m, b, o: m.x, "x", needs_batch=False)
    # The objective pulls x further into the feasible region x ≤ 0.
    problem = ceq.ConstrainedProblem(lambda out, batch: out.sum(), [ceq.Inequality(g, bound=0.0)])
    solver = _solver(problem, model, lr=0.05, dual_lr=1.0)
    for _ in range(steps):
        assert torch.equal(solver.step(None).multipliers["inequality_x"], torch.zeros_like(x))


@given(every=st.integers(2, 4), steps=st.integers(2, 9))
def test_dual_step_cadence(every, steps):
    x0 = torch.tensor([1.0, -2.0], dtype=torch.float64)
    model = VectorModel(2, x0)
    h = ceq.Target(lambda m, b, o: m.x, "x", needs_batch=False)
    problem = ceq.ConstrainedProblem(lambda out, batch: 0 * out.sum(), [ceq.Equality(h)])
    solver = ceq.Solver(problem, model, "lagrangian", torch.optim.SGD(model.parameters(), lr=0.0), dual_lr=0.5,
                        dual_every=every)
    for _ in range(steps):
        record = solver.step(None)
    # Only steps 0, every, 2·every, … move λ; x never moves (lr 0).
    n_dual = (steps - 1) // every + 1
    torch.testing.assert_close(record.multipliers["equality_x"], n_dual * 0.5 * x0)
