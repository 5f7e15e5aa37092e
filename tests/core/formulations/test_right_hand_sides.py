"""Right-hand sides of any sign: upper, lower and two-sided bounds, equalities h = d (float64).

Closed form: min ½‖x − a‖² s.t. lo ≤ x ≤ hi has x* = clip(a, lo, hi), μ*_upper = [a − hi]₊,
μ*_lower = [lo − a]₊; with x = d instead, λ* = a − d (stationarity x − a + λ = 0).
"""

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import constrained_eq as ceq
from constrained_eq.testing.toy_problems import VectorModel

numbers = st.floats(-5, 5, allow_nan=False)


def _x():
    return ceq.Target(lambda m, b, o: m.x, "x", needs_batch=False)


def _solve(a, constraints, steps=400, lr=0.3, dual_lr=0.3, formulation="lagrangian", **options):
    a = torch.tensor(a, dtype=torch.float64)
    problem = ceq.ConstrainedProblem(lambda out, batch: 0.5 * (out - a).pow(2).sum(), constraints)
    model = VectorModel(len(a), torch.zeros(len(a), dtype=torch.float64))
    solver = ceq.Solver(problem, model, formulation, torch.optim.SGD(model.parameters(), lr=lr), dual_lr, **options)
    for _ in range(steps):
        record = solver.step()
    return model.x.detach(), record, a


boxes = st.integers(1, 4).flatmap(lambda n: st.tuples(
    st.lists(numbers, min_size=n, max_size=n), st.lists(numbers, min_size=n, max_size=n),
    st.lists(st.floats(0.2, 4), min_size=n, max_size=n)))


@settings(max_examples=8, deadline=None)
@given(boxes)
def test_two_sided_per_entry_bounds_reach_the_clipped_point(spec):
    a, lo, width = spec
    hi = [low + w for low, w in zip(lo, width, strict=True)]
    x, record, a = _solve(a, [ceq.Inequality(_x(), lower=lo, bound=hi)])
    lo_t, hi_t = (torch.tensor(v, dtype=torch.float64) for v in (lo, hi))
    torch.testing.assert_close(x, torch.clamp(a, lo_t, hi_t), atol=1e-6, rtol=0)
    mu = record.multipliers["inequality_x"]
    assert mu.shape == (2 * len(a),)
    torch.testing.assert_close(mu, torch.cat([(a - hi_t).clamp(min=0), (lo_t - a).clamp(min=0)]), atol=1e-6, rtol=0)


def test_a_box_of_zero_width_is_accepted_and_its_violation_is_exact_in_float64():
    # lower = bound is the equality g = a written as two inequalities: [g − b, a − g], each side of the box
    # subtracted at the target's dtype (0.1 and 0.2 are not float32 numbers)
    values = torch.tensor([0.3, -0.7], dtype=torch.float64)
    box = ceq.Inequality(_x(), lower=[0.1, 0.2], bound=[0.1, 0.2])
    sides = torch.tensor([0.1, 0.2], dtype=torch.float64)
    assert torch.equal(box.violation(values), torch.cat([values - sides, sides - values]))
    point = ceq.Inequality(_x(), lower=0.5, bound=0.5)
    assert torch.equal(point.violation(values), torch.cat([values - 0.5, 0.5 - values]))
    assert torch.equal(ceq.Equality(_x(), value=[0.1, 0.2]).violation(values), values - sides)


@settings(max_examples=8, deadline=None)
@given(a=st.lists(numbers, min_size=1, max_size=4), bound=st.floats(-5, -0.5))
def test_negative_upper_bound_kkt_point(a, bound):
    x, record, a = _solve(a, [ceq.Inequality(_x(), bound=bound)])
    torch.testing.assert_close(x, a.clamp(max=bound), atol=1e-6, rtol=0)
    torch.testing.assert_close(record.multipliers["inequality_x"], (a - bound).clamp(min=0), atol=1e-6, rtol=0)


@settings(max_examples=8, deadline=None)
@given(a=st.lists(numbers, min_size=1, max_size=4), lower=numbers)
def test_scalar_lower_bound_kkt_point(a, lower):
    x, record, a = _solve(a, [ceq.Inequality(_x(), lower=lower)])
    torch.testing.assert_close(x, a.clamp(min=lower), atol=1e-6, rtol=0)
    torch.testing.assert_close(record.multipliers["inequality_x"], (lower - a).clamp(min=0), atol=1e-6, rtol=0)


@settings(max_examples=8, deadline=None)
@given(st.integers(1, 4).flatmap(lambda n: st.tuples(st.lists(numbers, min_size=n, max_size=n),
                                                      st.lists(numbers, min_size=n, max_size=n))))
def test_equality_with_a_value_kkt_point(spec):
    a, d = spec
    x, record, a = _solve(a, [ceq.Equality(_x(), value=d)])
    d = torch.tensor(d, dtype=torch.float64)
    torch.testing.assert_close(x, d, atol=1e-6, rtol=0)
    torch.testing.assert_close(record.multipliers["equality_x"], a - d, atol=1e-6, rtol=0)


@given(x0=st.lists(numbers, min_size=1, max_size=4), lower=numbers, lam0=st.floats(0, 3), eta_d=st.floats(1e-3, 0.5))
def test_lower_bound_dual_step_is_projected_ascent_on_a_minus_g(x0, lower, lam0, eta_d):
    x0 = torch.tensor(x0, dtype=torch.float64)
    problem = ceq.ConstrainedProblem(lambda out, batch: out.pow(2).sum(), [ceq.Inequality(_x(), lower=lower)])
    model = VectorModel(len(x0), x0)
    solver = ceq.Solver(problem, model, "lagrangian", torch.optim.SGD(model.parameters(), lr=0.1), eta_d)
    with torch.no_grad():
        solver.cmp.dual_parameters().__next__().fill_(lam0)
    record = solver.step()
    torch.testing.assert_close(record.violations["inequality_x"], lower - x0)
    torch.testing.assert_close(record.multipliers["inequality_x"], (lam0 + eta_d * (lower - x0)).clamp(min=0),
                               rtol=1e-12, atol=1e-12)
    # θ⁺ = θ − η(2x − λ): the lower bound pulls x up
    torch.testing.assert_close(model.x.detach(), x0 - 0.1 * (2 * x0 - lam0), rtol=1e-12, atol=1e-12)


@settings(max_examples=4, deadline=None)
@given(a=numbers, d=numbers, rho=st.floats(0.3, 3))
def test_resilient_equality_with_a_value_relaxes_around_d(a, d, rho):
    # min ½(x − a)² + ρ/2 u² s.t. |x − d| ≤ u: x* − d = (a − d)/(1 + ρ), u* = |x* − d|, λ* = ρ u*.
    x, record, _ = _solve([a], [ceq.Equality(_x(), value=d)], steps=1500, lr=0.2, dual_lr=0.2,
                          formulation="resilient", rho=rho)
    gap = (a - d) / (1 + rho)
    assert abs(x.item() - (d + gap)) < 1e-5
    assert abs(record.slacks["equality_x"].item() - abs(gap)) < 1e-5
    assert abs(record.multipliers["equality_x"].item() - rho * abs(gap)) < 1e-5


def test_a_per_entry_bound_of_the_wrong_length_is_refused_when_the_solver_is_built():
    problem = ceq.ConstrainedProblem(lambda out, batch: out.sum(), [ceq.Inequality(_x(), bound=[1.0, 2.0])])
    model = VectorModel(3)
    try:
        ceq.Solver(problem, model, "lagrangian", torch.optim.SGD(model.parameters(), lr=0.1))
    except ValueError as err:
        assert str(err) == ("Inequality(target=x, bound=(1.0, 2.0)): 'bound' has 2 entries but the target 'x' "
                            "has 3; give one number, or one per entry")
    else:
        raise AssertionError("a 2-entry bound on a 3-entry target was accepted")


def test_two_constraints_on_one_target_need_no_names_and_names_are_free_text():
    lower, upper = ceq.Inequality(_x(), lower=-1.0), ceq.Inequality(_x(), bound=2.0)
    problem = ceq.ConstrainedProblem(lambda out, batch: out.sum(), [lower, upper])
    assert [key for key, _ in problem.named_constraints()] == ["inequality_x", "inequality_x_2"]
    named = ceq.Resilient(_x(), rho=1.0, name="x stays small (layer 1.weight)")
    problem = ceq.ConstrainedProblem(lambda out, batch: out.sum(), [named])
    model = VectorModel(2, torch.ones(2, dtype=torch.float64))
    solver = ceq.Solver(problem, model, "resilient", torch.optim.SGD(model.parameters(), lr=0.1), 0.1)
    record = solver.step()
    assert set(record.slacks) == set(record.multipliers) == {"x stays small (layer 1.weight)"}
    solver.load_state_dict(solver.state_dict())
