"""Constraints measured over whole splits, feasible selection, iterate averaging, divergence by λ and J₀."""

from __future__ import annotations

import json

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

import constrained_eq as ceq
from constrained_eq.core.solver.split_feasibility import measure
from constrained_eq.testing.toy_problems import VectorModel
from constrained_eq.training.loop import fit
from constrained_eq.training.monitoring import DivergenceError
from constrained_eq.training.run_folder import read_csv
from constrained_eq.training.settings import Averaging, Evaluation, Limits, Logging, Selection


class Scale(torch.nn.Module):
    """``f(x) = w · x`` with a scalar weight w."""

    def __init__(self, w: float = 1.0) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.tensor(w))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w * x


def _mean_output(model, batch, output):
    return output.mean().reshape(1)


def _rate_totals(model, batch, output):  # Σ_i [x_i > 0] σ(f_i) and Σ_i [x_i > 0]: a rate over the positives
    positive = (batch[0] > 0).float()
    return torch.stack([(torch.sigmoid(output) * positive).sum(), positive.sum()])


def test_constraints_are_measured_over_the_whole_validation_split(tmp_path):
    x_val = torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0, -6.0, 7.0, 8.0, 9.0, 10.0])  # batches of 4, 4, 2
    val = DataLoader(TensorDataset(x_val, x_val), batch_size=4)
    train = DataLoader(TensorDataset(torch.ones(8), torch.ones(8)), batch_size=4)
    mean = ceq.Inequality(ceq.Target(_mean_output, "mean_out"), bound=2.0, name="mean")
    rate = ceq.Inequality(ceq.Target(lambda m, b, o: torch.sigmoid(o).mean().reshape(1), "rate", totals=_rate_totals,
                                     from_totals=lambda s: (s[0] / s[1]).reshape(1)), bound=0.99, name="rate")
    weight = ceq.Inequality(ceq.Target(lambda model: model.w.abs().reshape(1), "w_abs"), bound=10.0, name="w")
    problem = ceq.ConstrainedProblem(lambda out, batch: (out - batch[1]).pow(2).mean(), [mean, rate, weight])
    model = Scale(1.0)
    solver = ceq.Solver(problem, model, "lagrangian", torch.optim.SGD(model.parameters(), lr=0.01), 0.1,
                        example_batch=train)
    fit(solver, train, val, epochs=2, run_dir=tmp_path, progress=False)
    w = model.w.detach()
    row = {k: v[-1] for k, v in read_csv(tmp_path / "history.csv").items()}
    expected_mean = float(w * x_val.mean())  # the split's mean, not the mean of the batch means (3.75, 5.25, 9.5)
    assert row["val/mean/value[0]"] == pytest.approx(expected_mean, rel=1e-6)
    assert row["val/mean/violation[0]"] == pytest.approx(max(expected_mean - 2.0, 0.0), rel=1e-6)
    positives = x_val > 0
    expected_rate = float(torch.sigmoid(w * x_val[positives]).sum() / positives.sum())
    assert row["val/rate/value[0]"] == pytest.approx(expected_rate, rel=1e-6)
    assert row["val/w/value[0]"] == pytest.approx(float(w.abs()), rel=1e-6) and row["val/w/violation[0]"] == 0.0
    summary = json.loads((tmp_path / "metrics.json").read_text())
    verdict = summary["measured_constraints"]["final"]
    assert verdict["max_violation"]["mean"] == pytest.approx(expected_mean - 2.0, rel=1e-6)
    assert verdict["feasible"] is False and summary["measured_constraints"]["tolerance"] == 1e-3
    assert set(verdict["counted"]) == {"mean", "rate", "w"}


def test_homotopy_constraints_are_measured_but_not_counted():
    from constrained_eq.tasks.toy_rotation import ToyRotation

    task = ToyRotation(n_train=16, n_val=8, n_test=8)
    model = task.model("vector_net", hidden=4, n_layers=2)
    problem = ceq.ConstrainedProblem(ceq.Objective(task.loss, task.forward), [ceq.Equality(ceq.gammas)])
    measured = measure(ceq.Solver(problem, model, "lagrangian"), model)
    assert measured.violations["equality_gammas"] == [1.0, 1.0] and measured.counted == [] and measured.feasible


class _Scripted(torch.nn.Module):
    """A parameter x whose constraint value at evaluation (eval mode) is read from a script."""

    def __init__(self, values: list[float]) -> None:
        super().__init__()
        self.x = torch.nn.Parameter(torch.zeros(1))
        self.values = iter(values)

    def forward(self, batch):
        return self.x


def _scripted_target(model, batch, output):
    return torch.tensor([next(model.values)]) if not model.training else model.x * 0


def _scripted_fit(values, losses, **kwargs):
    model = _Scripted(values)
    problem = ceq.ConstrainedProblem(lambda out, batch: out.pow(2).sum(),
                                     [ceq.Inequality(ceq.Target(_scripted_target, "scripted"), bound=0.1, name="c")])
    solver = ceq.Solver(problem, model, "lagrangian", torch.optim.SGD(model.parameters(), lr=0.0), 0.1,
                        example_batch=torch.zeros(1))
    scripted = iter(losses)
    return fit(solver, [torch.zeros(1)], [torch.zeros(1)], epochs=len(losses), progress=False,
               evaluation=Evaluation(evaluate=lambda m, loader: {"loss": next(scripted)}), **kwargs)


def test_feasible_selection_takes_the_best_objective_among_feasible_evaluations():
    # the last scripted value is the certificate's measurement of the deployed model, after training
    result = _scripted_fit([0.2, 0.1, 0.05, 0.3, 0.05], [0.1, 0.5, 0.3, 0.05])  # default select: feasible
    assert result.best_epoch == 2 and result.feasibility["feasible"] is True
    assert "among the feasible evaluations" in result.selection
    assert result.certificate["constraints"]["c"]["margins"] == pytest.approx([0.05]) and result.ok
    by_loss = _scripted_fit([0.2, 0.1, 0.05, 0.3, 0.3], [0.1, 0.5, 0.3, 0.05], selection=Selection(column="val_loss"))
    assert by_loss.best_epoch == 3


def test_without_a_feasible_evaluation_the_least_violating_is_kept_and_said(tmp_path):
    result = _scripted_fit([0.3, 0.15, 0.5, 0.15], [0.1, 0.9, 0.05], run_dir=tmp_path)
    assert result.best_epoch == 1 and result.feasibility["feasible"] is False
    assert result.violated == ["c"] and result.certificate["constraints"]["c"]["margins"] == pytest.approx([-0.05])
    summary = json.loads((tmp_path / "metrics.json").read_text())
    assert summary["feasible"] is False and summary["select"] == "feasible"
    assert "NO evaluation was feasible" in summary["selection"] and "0.05" in summary["selection"]


def _quadratic(a: float = 2.0):
    model = VectorModel(1, torch.zeros(1))
    problem = ceq.ConstrainedProblem(lambda out, batch: 0.5 * (out - a).pow(2).sum())
    return model, problem


@pytest.mark.parametrize("averaging", ["uniform", "ema"])
def test_averaged_iterate_follows_its_update_law_and_is_a_candidate(averaging):
    a, lr, steps, decay = 2.0, 1.9, 10, 0.75  # d ≠ 1 − d: the law tells d from 1 − d
    model, problem = _quadratic(a)
    solver = ceq.Solver(problem, model, "lagrangian", torch.optim.SGD(model.parameters(), lr=lr))
    result = fit(solver, [torch.zeros(1)] * steps, [torch.zeros(1)], epochs=1, progress=False,
                 averaging=Averaging(kind=averaging, ema_decay=decay))
    iterates = [a + (-0.9) ** k * (0.0 - a) for k in range(1, steps + 1)]  # x_k − a = (1 − η)^k (x_0 − a)
    if averaging == "uniform":
        average = sum(iterates) / steps
    else:
        average = iterates[0]
        for x in iterates[1:]:
            average = decay * average + (1 - decay) * x
    assert result.final_metrics["val_avg_loss"] == pytest.approx(0.5 * (average - a) ** 2, rel=1e-4)
    assert result.final_metrics["val_loss"] == pytest.approx(0.5 * (iterates[-1] - a) ** 2, rel=1e-4)
    assert result.candidate == "averaged"  # the oscillating iterate is farther from a than its average


def test_averaging_starts_at_the_first_step_of_epoch_average_start():
    # x_k − a = (1 − η)^k (x_0 − a) with η = 1.9, three steps an epoch: epoch 1 is steps 4, 5, 6, and
    # average_start=1 averages exactly those (uniformly)
    a, lr, per_epoch = 2.0, 1.9, 3
    model, problem = _quadratic(a)
    solver = ceq.Solver(problem, model, "lagrangian", torch.optim.SGD(model.parameters(), lr=lr))
    result = fit(solver, [torch.zeros(1)] * per_epoch, [torch.zeros(1)], epochs=2, progress=False,
                 averaging=Averaging(kind="uniform", start=1))
    iterates = [a + (-0.9) ** k * (0.0 - a) for k in range(1, 2 * per_epoch + 1)]
    average = sum(iterates[per_epoch:]) / per_epoch
    assert result.averaged is not None
    assert float(result.averaged.x) == pytest.approx(average, rel=1e-5)
    assert result.final_metrics["val_avg_loss"] == pytest.approx(0.5 * (average - a) ** 2, rel=1e-4)


def test_a_satisfied_constraint_of_any_size_trains_on():
    model = VectorModel(1, torch.ones(1))
    big = ceq.Target(lambda m, b, o: 9e6 + 0.0 * m.x, "big", needs_batch=False)  # 9e6 ≤ 1e7: satisfied, λ = 0
    problem = ceq.ConstrainedProblem(lambda out, batch: (out - 2).pow(2).sum(), [ceq.Inequality(big, bound=1e7)])
    solver = ceq.Solver(problem, model, "lagrangian", torch.optim.SGD(model.parameters(), lr=0.1), 1.0)
    result = fit(solver, [torch.zeros(1)] * 5, [torch.zeros(1)], epochs=2, progress=False, logging=Logging(every=1))
    assert result.epochs == 2 and solver.multipliers()["inequality_big"].item() == 0.0
    assert result.feasibility["feasible"] is True


def test_multipliers_growing_without_bound_stop_the_run():
    model = VectorModel(1, torch.ones(1))
    problem = ceq.ConstrainedProblem(lambda out, batch: 0.0 * out.sum(),
                                     [ceq.Equality(ceq.Target(lambda m: m.x + 1e3, "shifted"))])
    solver = ceq.Solver(problem, model, "lagrangian", torch.optim.SGD(model.parameters(), lr=0.0), 10.0)
    with pytest.raises(DivergenceError, match=r"max\|λ\| of constraint 'equality_shifted'"):  # λ_k = k · 10 · 1001
        fit(solver, [torch.zeros(1)] * 20, epochs=1, progress=False, limits=Limits(divergence=1e5),
            logging=Logging(every=1))


def test_an_objective_blow_up_stops_the_run():
    model = VectorModel(1, torch.zeros(1))
    problem = ceq.ConstrainedProblem(lambda out, batch: -out.sum())  # x grows by η every step: |J₀| = η k
    solver = ceq.Solver(problem, model, "lagrangian", torch.optim.SGD(model.parameters(), lr=10.0))
    with pytest.raises(DivergenceError, match="the objective blew up"):
        fit(solver, [torch.zeros(1)] * 30, epochs=1, progress=False, limits=Limits(objective=5.0),
            logging=Logging(every=1))


def _toy_fit(run_dir, epochs, resume=False):
    from constrained_eq.tasks.toy_rotation import ToyRotation

    torch.manual_seed(0)
    task = ToyRotation(n_train=32, n_val=16, n_test=16, breaking=0.3)
    loaders = task.loaders(seed=0, batch_size=8)
    model = task.model("vector_net", hidden=4, n_layers=2)
    bound = ceq.Inequality(ceq.Target(lambda m, b, o: o.norm(dim=-1).mean().reshape(1), "out_norm"), bound=1.0)
    problem = ceq.ConstrainedProblem(ceq.Objective(task.loss, task.forward), [ceq.Equality(ceq.gammas), bound])
    solver = ceq.Solver(problem, model, "lagrangian", torch.optim.Adam(model.parameters(), 1e-2), 0.05,
                        example_batch=loaders.train)
    return fit(solver, loaders.train, loaders.val, epochs=epochs, run_dir=run_dir, progress=False, resume=resume,
               checkpoint_every=1, averaging=Averaging(kind="ema", ema_decay=0.9, start=1))


def test_resume_restores_the_average_and_the_selection(tmp_path):
    straight = _toy_fit(tmp_path / "a", 4)
    _toy_fit(tmp_path / "b", 2)
    resumed = _toy_fit(tmp_path / "b", 4, resume=True)
    assert (resumed.best_epoch, resumed.candidate, resumed.selection) == (straight.best_epoch, straight.candidate,
                                                                          straight.selection)
    for key in straight.averaged.state_dict():
        assert torch.equal(straight.averaged.state_dict()[key], resumed.averaged.state_dict()[key]), key
    a, b = (json.loads((tmp_path / d / "metrics.json").read_text()) for d in ("a", "b"))
    assert a["measured_constraints"] == b["measured_constraints"] and a["best"] == b["best"]
