"""The Lie-derivative penalty and constraint on the engine (CR's regulariser, and a bounded version)."""

import torch

import constrained_eq as ceq
from constrained_eq.symmetry import SO, VectorRep


class RelaxedVN(torch.nn.Module):
    """x ∈ R^{2×3} ↦ a·x + γ·unvec(W vec x): rotation-equivariant at γ = 0."""

    def __init__(self):
        super().__init__()
        rep = VectorRep(2)
        self.layer = ceq.HomotopicLayer(Scale(), Flat(ceq.LinearBranch(6, 6, rep, rep)))

    def forward(self, x):
        return self.layer(x)


class Scale(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.a = torch.nn.Parameter(torch.tensor(1.0))

    def forward(self, x):
        return self.a * x


class Flat(torch.nn.Module):
    def __init__(self, branch):
        super().__init__()
        self.branch = branch

    def forward(self, x):
        return self.branch(x.reshape(*x.shape[:-2], 6)).reshape(x.shape)


def _problem(*constraints):
    return ceq.ConstrainedProblem(lambda out, batch: (out - batch[1]).pow(2).mean(), list(constraints))


def _batch():
    x = torch.randn(16, 2, 3)
    return x, 1.5 * x


def test_cr_schedule_with_lie_penalty_shrinks_the_lie_derivative():
    model = RelaxedVN()
    # CR = the same problem as ACE (γ = 0) solved by schedule, plus the Lie penalty.
    problem = _problem(ceq.Equality(ceq.gammas), ceq.LieDerivative(SO(3), weight=0.05))
    solver = ceq.Solver(problem, model, "schedule", torch.optim.SGD(model.parameters(), lr=0.02), epochs=2,
                        example_batch=_batch())
    solver.set_epoch(1)  # c = 1 at mid-training
    first = solver.step(_batch()).values
    for _ in range(200):
        last = solver.step(_batch()).values
    key = "penalty_lie_regularizer_SO3"
    assert last[key].item() < 0.2 * first[key].item()
    assert solver.model.layer.gamma.item() == 1.0  # set by the schedule, not trained


def test_lie_bound_as_a_constraint_gets_a_multiplier():
    model = RelaxedVN()
    problem = _problem(ceq.LieDerivative(SO(3), bound=2.0))
    solver = ceq.Solver(problem, model, "lagrangian", torch.optim.SGD(model.parameters(), lr=0.01), dual_lr=0.002,
                        example_batch=_batch())
    first = solver.step(_batch())
    (key,) = first.multipliers
    peak, late = 0.0, []
    for step in range(300):
        record = solver.step(_batch())
        assert record.multipliers[key].item() >= 0
        peak = max(peak, record.multipliers[key].item())
        if step >= 250:
            late.append(record.values[key].item())
    assert first.values[key].item() > 2.0 and peak > 0  # infeasible at first: the multiplier acted
    assert max(late) < 2.0
