"""The fairness example's pieces: the two-group rate target over a split, the task, the problem file."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import constrained_eq as ceq
from constrained_eq.core.solver.split_feasibility import measure
from constrained_eq.run.build import build
from constrained_eq.run.problem_file import load_problem_file
from constrained_eq.tasks.fairness import Fairness

ROOT = Path(__file__).resolve().parents[2]


def test_the_rate_gap_over_a_split_is_a_ratio_of_the_split_sums():
    task = Fairness(n_train=64, n_val=250, n_test=64)
    loaders = task.loaders(seed=0, batch_size=16)  # 250 = 15 × 16 + 10: uneven batches, uneven groups
    model = task.model("logistic")
    problem = ceq.ConstrainedProblem(ceq.Objective(task.loss, task.forward),
                                     [ceq.Inequality(ceq.positive_rate_gap, bound=0.05, name="parity")])
    solver = ceq.Solver(problem, model, "lagrangian", example_batch=loaders.train)
    z, _, a = loaders.val.dataset.tensors
    with torch.no_grad():
        p = torch.sigmoid(model(z))
    gap = float(p[a == 0].mean() - p[a == 1].mean())
    measured = measure(solver, model, loaders.val)
    assert measured.values["parity"] == pytest.approx([gap, -gap], abs=1e-6)
    assert measured.violations["parity"] == pytest.approx([max(gap - 0.05, 0), max(-gap - 0.05, 0)], abs=1e-6)
    hard = (model(z) > 0).float()
    split = task.aggregate([task.batch_summary(model(b[0]), b) for b in loaders.val])
    assert split["rate_gap"] == pytest.approx(float((hard[a == 0].mean() - hard[a == 1].mean()).abs()), abs=1e-6)


def test_the_fairness_problem_file_builds_with_feasible_selection_and_averaging():
    spec = load_problem_file(ROOT / "problems" / "fairness.yaml")
    built = build(spec)
    assert [p.key for p in built.solver.plans] == ["inequality_positive_rate_gap"]
    assert spec["evaluation"]["select"] == "feasible" and spec["training"]["averaging"] == "uniform"
    assert built.solver.plans[0].constraint.target.reads == ("parameters", "batch", "output")
