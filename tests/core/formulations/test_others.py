"""Augmented Lagrangian, quadratic penalty, schedule and none: their contributions and dual steps."""

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import constrained_eq as ceq
from constrained_eq.core.formulations import Schedule, resolve_formulation, triangle
from constrained_eq.testing.toy_problems import VectorModel


def _x_problem(a, constraint_cls=ceq.Equality, **kwargs):
    target = ceq.Target(lambda m, b, o: m.x, "x", needs_batch=False)
    return ceq.ConstrainedProblem(lambda out, batch: 0.5 * (out - a).pow(2).sum(), [constraint_cls(target, **kwargs)])


@given(x0=st.floats(-2, 2), lam0=st.floats(-2, 2), c=st.floats(0.1, 3), eta_p=st.floats(0.01, 0.3),
       eta_d=st.floats(0.01, 0.3))
def test_augmented_lagrangian_equality_step(x0, lam0, c, eta_p, eta_d):
    model = VectorModel(1, torch.tensor([x0], dtype=torch.float64))
    solver = ceq.Solver(_x_problem(1.0), model, "augmented_lagrangian",
                        torch.optim.SGD(model.parameters(), lr=eta_p), dual_lr=eta_d, penalty_coefficient=c)
    with torch.no_grad():
        solver.cmp.equality_x.multiplier.weight.fill_(lam0)
    record = solver.step(None)
    # L = ½(x − 1)² + λx + c/2 x²
    assert model.x.item() == pytest.approx(x0 - eta_p * ((x0 - 1.0) + lam0 + c * x0), abs=1e-12)
    assert record.multipliers["equality_x"].item() == pytest.approx(lam0 + eta_d * x0, abs=1e-12)


@given(x0=st.floats(-2, 2), c=st.floats(0.1, 3), bound=st.floats(0, 1))
def test_quadratic_penalty_has_no_multiplier_and_penalises_only_violation(x0, c, bound):
    model = VectorModel(1, torch.tensor([x0], dtype=torch.float64))
    solver = ceq.Solver(_x_problem(0.0, ceq.Inequality, bound=bound), model, "penalty",
                        torch.optim.SGD(model.parameters(), lr=0.1), coefficient=c)
    record = solver.step(None)
    assert record.multipliers == {}
    # ∇ = x + c·[x − b]₊
    assert model.x.item() == pytest.approx(x0 - 0.1 * (x0 + c * max(x0 - bound, 0.0)), abs=1e-12)


def test_penalty_constraints_add_weight_times_sum_under_every_formulation_but_none():
    target = ceq.Target(lambda m, b, o: m.x.pow(2), "sq", needs_batch=False)
    problem = ceq.ConstrainedProblem(lambda out, batch: 0 * out.sum(), [ceq.Penalty(target, weight=0.5)])
    for name, factor in [("lagrangian", 1.0), ("resilient", 1.0), ("penalty", 1.0), ("none", 0.0)]:
        model = VectorModel(2, torch.tensor([1.0, -2.0], dtype=torch.float64))
        solver = ceq.Solver(problem, model, name, torch.optim.SGD(model.parameters(), lr=0.1))
        solver.step(None)
        expected = torch.tensor([1.0, -2.0], dtype=torch.float64) * (1 - 0.1 * factor * 0.5 * 2)
        torch.testing.assert_close(model.x.detach(), expected)


def test_triangle_schedule_matches_cr():
    epochs = 10
    values = [triangle(i, epochs) for i in range(epochs + 1)]
    assert values[0] == 0.0 and values[5] == 1.0 and values[10] == 0.0
    assert values == pytest.approx([0, 0.2, 0.4, 0.6, 0.8, 1.0, 0.8, 0.6, 0.4, 0.2, 0.0])


class _ScaledModel(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.x = torch.nn.Parameter(torch.ones(2, dtype=torch.float64))
        self.w = torch.nn.Parameter(torch.ones(2, dtype=torch.float64))

    def forward(self, batch):
        return self.w * self.x


def test_schedule_sets_variables_and_does_not_train_them():
    target = ceq.Target(lambda m, b, o: m.x, "g", needs_batch=False, variables=lambda m: [m.x])
    problem = ceq.ConstrainedProblem(lambda out, batch: (out - 3.0).pow(2).sum(), [ceq.Equality(target)])
    model = _ScaledModel()
    solver = ceq.Solver(problem, model, "schedule", torch.optim.SGD(model.parameters(), lr=0.01), epochs=4)
    seen = []
    for epoch in range(5):
        solver.set_epoch(epoch)
        record = solver.step(None)
        seen.append(record.values["equality_g"][0].item())
    assert seen == [0.0, 0.5, 1.0, 0.5, 0.0]
    assert record.multipliers == {}
    assert not model.x.requires_grad


def test_none_ignores_constraints_but_still_reports_them():
    target = ceq.Target(lambda m, b, o: m.x, "x", needs_batch=False)
    problem = ceq.ConstrainedProblem(lambda out, batch: 0.5 * (out - 1.0).pow(2).sum(), [ceq.Equality(target)])
    model = VectorModel(1, torch.zeros(1, dtype=torch.float64))
    solver = ceq.Solver(problem, model, "none", torch.optim.SGD(model.parameters(), lr=0.5))
    record = solver.step(None)
    assert record.multipliers == {} and record.violations == {}
    assert torch.equal(record.values["equality_x"], torch.zeros(1, dtype=torch.float64))
    assert model.x.item() == pytest.approx(0.5)


@pytest.mark.parametrize(
    ("query", "options", "message"),
    [
        ("lagrange", {}, r"Expected 'formulation' to be one of 'lagrangian', 'augmented_lagrangian', 'resilient', "
                         r"'penalty', 'schedule', 'none' \(got 'lagrange'\)"),
        ("resilient", {"rho": -1.0}, r"ResilientLagrangian: expected 'rho' to be a finite number > 0 \(got -1.0\)"),
        ("augmented_lagrangian", {"penalty_coefficient": 0}, r"expected 'penalty_coefficient' to be a finite number"),
        ("schedule", {"epochs": 0}, r"Schedule: expected 'epochs' to be an integer ≥ 1 \(got 0\)"),
        ("schedule", {"epochs": 3, "shape": "saw"}, r"expected 'shape' to be one of 'triangle', 'constant'"),
        ("lagrangian", {"rho": 1.0}, r"Bad options for formulation 'lagrangian'"),
    ],
)
def test_bad_formulations_are_rejected(query, options, message):
    with pytest.raises(ValueError, match=message):
        resolve_formulation(query, **options)


def test_schedule_instance_passes_through():
    schedule = Schedule(epochs=3)
    assert resolve_formulation(schedule) is schedule
