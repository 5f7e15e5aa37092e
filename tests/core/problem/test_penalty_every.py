"""A penalty evaluated every k steps: k · w · Σ p on the steps ≡ 0 (mod k), nothing (and no evaluation) otherwise."""

import math

import pytest
import torch

import constrained_eq as ceq
from constrained_eq.run.constraint_entries import parse_entry
from constrained_eq.training.monitoring import constraint_columns

WEIGHT, LR = 0.3, 0.05


class Counted:
    """p(θ) = the squared row norms of the linear map (L = 3), counting its evaluations."""

    def __init__(self):
        self.calls = 0

    def __call__(self, model, batch=None, output=None):
        self.calls += 1
        return model.weight.pow(2).sum(dim=1)


def _solver(every, counted, seed=0):
    torch.manual_seed(seed)
    model = torch.nn.Linear(3, 3, bias=False).double()
    options = {} if every is None else {"every": every}  # None: the penalty as written before 'every'
    penalty = ceq.Penalty(ceq.Target(counted, "row_norms", needs_batch=False), weight=WEIGHT, **options)
    problem = ceq.ConstrainedProblem(lambda out, batch: (out - batch[1]).pow(2).mean(), [penalty])
    solver = ceq.Solver(problem, model, "lagrangian", torch.optim.SGD(model.parameters(), lr=LR), dual_lr=0.1)
    counted.calls = 0  # the Solver's dry run evaluated the target once
    return solver


def _batch(step):
    x = torch.randn(8, 3, generator=torch.Generator().manual_seed(step), dtype=torch.float64)
    return x, 2 * x


def _expected_gradient(model, batch, scale):
    """∇θ of J_0 + scale · Σ p at the current θ, by hand."""
    weight = model.weight.detach().clone().requires_grad_(True)
    loss = (batch[0] @ weight.T - batch[1]).pow(2).mean() + scale * weight.pow(2).sum(dim=1).sum()
    return torch.autograd.grad(loss, weight)[0]


@pytest.mark.parametrize("given", [None, 1, 3])
def test_every_k_steps_the_penalty_is_k_times_heavier_and_otherwise_absent(given):
    counted = Counted()
    solver = _solver(given, counted)
    model, steps, every = solver.model, 8, given or 1
    for step in range(steps):
        batch = _batch(step)
        before = model.weight.detach().clone()
        evaluated = step % every == 0
        scale = every * WEIGHT if evaluated else 0.0
        grad = _expected_gradient(model, batch, scale)
        record = solver.step(batch)
        if not evaluated:
            assert torch.equal(record.lagrangian, record.loss)
        elif every == 1:  # bit for bit the penalty as computed before 'every': J_0 + w · Σ p
            assert torch.equal(record.lagrangian, record.loss + WEIGHT * before.pow(2).sum(dim=1).sum())
        else:
            torch.testing.assert_close(record.lagrangian - record.loss, scale * before.pow(2).sum())
        torch.testing.assert_close(model.weight.detach(), before - LR * grad)
    assert counted.calls == math.ceil(steps / every)


def test_skipped_steps_log_the_last_computed_values_in_the_same_columns():
    solver = _solver(4, Counted())
    records = [solver.step(_batch(step)) for step in range(6)]
    key = "penalty_row_norms"
    for step in (1, 2, 3):
        assert torch.equal(records[step].values[key], records[0].values[key])
    assert torch.equal(records[5].values[key], records[4].values[key])
    assert not torch.equal(records[4].values[key], records[0].values[key])  # the step moved θ
    assert [set(constraint_columns(r)) for r in records] == [set(constraint_columns(records[0]))] * 6


def test_a_skipped_step_before_any_evaluation_logs_nan_of_the_target_length():
    solver = _solver(4, Counted())
    solver.step_count = 2  # as after resuming mid-cycle: nothing computed yet in this Solver
    record = solver.step(_batch(0))
    values = record.values["penalty_row_norms"]
    assert values.shape == (3,) and torch.isnan(values).all()
    assert torch.equal(record.lagrangian, record.loss)


@pytest.mark.parametrize(("every", "error", "message"), [
    (0, ValueError, r"Penalty: expected 'every' to be a positive integer, the number of steps between evaluations "
                    r"\(got 0\)"),
    (-2, ValueError, r"Penalty: expected 'every' to be a positive integer.*\(got -2\)"),
    (2.5, TypeError, r"Penalty: expected 'every' to be a positive integer \(got float 2.5\)"),
    (True, TypeError, r"Penalty: expected 'every' to be a positive integer \(got bool True\)"),
    ("4", TypeError, r"Penalty: expected 'every' to be a positive integer \(got str '4'\)"),
])
def test_bad_every_is_refused(every, error, message):
    with pytest.raises(error, match=message):
        ceq.Penalty("gammas", weight=0.1, every=every)


def test_repr_shows_every_only_when_not_one_and_round_trips():
    from constrained_eq.core.problem.constraints import parse

    assert ceq.Penalty("gammas", weight=0.1, every=1) == ceq.Penalty("gammas", weight=0.1)
    assert repr(ceq.Penalty("gammas", weight=0.1)) == "Penalty(target=gammas, weight=0.1)"
    four = ceq.Penalty("gammas", weight=0.1, every=4, name="p")
    assert repr(four) == "Penalty(target=gammas, weight=0.1, every=4, name='p')"
    assert parse(repr(four)) == four


def test_lie_derivative_every_from_a_problem_file_entry():
    built = parse_entry("LieDerivative(weight=0.01, every=4)")
    assert built == ceq.LieDerivative(weight=0.01, every=4) and built.every == 4
    assert repr(built) == "Penalty(target=lie_regularizer, weight=0.01, every=4)"
    assert parse_entry({"kind": "LieDerivative", "weight": 0.01, "every": 2}).every == 2
    with pytest.raises(ValueError, match=r"expected 'every' to be a positive integer.*\(got 0\)"):
        parse_entry("LieDerivative(weight=0.01, every=0)")
    with pytest.raises(ValueError, match=r"Expected 'every' only with 'weight' \(got every=4 and bound=0.1\); a "
                                         r"constraint with a multiplier is evaluated every step"):
        parse_entry("LieDerivative(bound=0.1, every=4)")
    with pytest.raises(TypeError, match="unexpected keyword argument 'every'"):
        parse_entry("Inequality(target=gammas, bound=0.1, every=4)")
