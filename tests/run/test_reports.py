"""Reports and plots read constraints by name; γ vocabulary only for homotopy constraints; calibrated signatures."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from _toy import TOY_DATA

import constrained_eq as ceq
from constrained_eq.run.cli import main
from constrained_eq.run.diagnostics import RELAXED_RTOL, check_resilient
from constrained_eq.run.problem_file import load_problem_file
from constrained_eq.run.report import build_report, read_history, symmetry_report
from constrained_eq.run.runner import run_problem, write_symmetry_report
from constrained_eq.tasks.toy_rotation import ToyRotation
from constrained_eq.training.loop import fit

ROOT = Path(__file__).resolve().parents[2]

SMALL = TOY_DATA + """\
constraints:
  - Equality(target=gammas)
strategy: ace_resilient
formulation:
  name: resilient
  options: {rho: 0.5}
training:
  epochs: 4
  batch_size: 8
"""


def test_a_resilient_run_is_reported_and_kkt_checked_at_its_own_rho(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text(SMALL)
    run_problem(load_problem_file(path), tmp_path / "run", progress=False)
    text = (tmp_path / "run" / "symmetry_report.txt").read_text().splitlines()
    assert text[0] == "SymmetryReport (resilient, rho=0.5)"
    groups, others = read_history(tmp_path / "run" / "history.csv")
    f = groups["equality_gammas"]
    report = symmetry_report(tmp_path / "run")
    assert report.rho == 0.5
    assert report.kkt_ok == check_resilient(f["gamma"], f["lambda"], f["slack"], 0.5).ok


def _fit_run(tmp_path, formulation, **options):
    task = ToyRotation(n_train=32, n_val=16, n_test=16, breaking=0.3)
    loaders = task.loaders(seed=0, batch_size=16)
    model = task.model("vector_net", hidden=4, n_layers=2)
    problem = ceq.ConstrainedProblem(ceq.Objective(task.loss, task.forward), [ceq.Equality(ceq.gammas)])
    solver = ceq.Solver(problem, model, formulation, torch.optim.Adam(model.parameters(), 1e-2), 0.05, **options)
    fit(solver, loaders.train, loaders.val, epochs=3, run_dir=tmp_path, progress=False)
    return tmp_path


def test_ceq_report_on_a_fit_run_names_the_formulation_that_ran(tmp_path, capsys):
    run_dir = _fit_run(tmp_path, "augmented_lagrangian", penalty_coefficient=2.0)
    assert main(["report", str(run_dir)]) == 0
    printed = capsys.readouterr().out
    assert "SymmetryReport (augmented_lagrangian)" in printed
    assert "constraints (augmented_lagrangian, penalty_coefficient=2.0)" in printed
    summary = json.loads((run_dir / "metrics.json").read_text())
    assert summary["formulation"] == "augmented_lagrangian"
    assert summary["formulation_options"] == {"penalty_coefficient": 2.0}


def _fpr(tmp_path):
    text = (ROOT / "problems" / "fpr.yaml").read_text().replace("n_train: 2000", "n_train: 400")
    (tmp_path / "fpr.yaml").write_text(text)
    return load_problem_file(tmp_path / "fpr.yaml", {"training.epochs": 2})


def test_a_rate_constraint_gets_a_constraint_report_and_no_symmetry_report(tmp_path):
    spec = _fpr(tmp_path)
    summary = run_problem(spec, tmp_path / "run", progress=False)
    assert summary["select"] == "feasible"  # select: auto with a constraint the deployed model must meet
    assert write_symmetry_report(tmp_path / "run") is None and not (tmp_path / "run" / "symmetry_report.txt").exists()
    text = (tmp_path / "run" / "constraint_report.txt").read_text()
    assert "inequality_false_positive_rate" in text and "bound=0.05" in text and "γ" not in text
    test = summary["measured_constraints"]["test"]
    assert test["counted"] == ["inequality_false_positive_rate"] and isinstance(test["feasible"], bool)


def _drawn_figures(monkeypatch) -> list:
    """The figures ``plot_run`` writes, in order (each is kept when it is saved)."""
    from constrained_eq.run import plots

    figures, save = [], plots._Saver.__call__
    monkeypatch.setattr(plots._Saver, "__call__", lambda self, fig, name: figures.append(fig) or save(self, fig, name))
    return figures


def test_plots_label_their_axes_draw_the_bound_and_tell_lines_apart(tmp_path, monkeypatch):
    from constrained_eq.run.plots import plot_run

    run_problem(_fpr(tmp_path), tmp_path / "run", progress=False)
    figures = _drawn_figures(monkeypatch)
    paths = plot_run(tmp_path / "run")
    names = [p.stem for p in paths]
    assert {"curves", "inequality_false_positive_rate_value", "inequality_false_positive_rate_violation",
            "inequality_false_positive_rate_lambda"} <= set(names)
    figs = dict(zip(names, figures, strict=True))
    for name, fig in figs.items():
        for ax in fig.axes:
            assert ax.get_xlabel() and ax.get_ylabel(), name
    curves = figs["curves"].axes
    assert len(curves) == 2 and {ax.get_ylabel() for ax in curves} == {"loss", "error rate"}  # one panel per unit
    value = figs["inequality_false_positive_rate_value"].axes[0]
    flat = [line for line in value.lines if len(set(line.get_ydata())) == 1 and line.get_linestyle() == "--"]
    assert any(line.get_ydata()[0] == 0.05 for line in flat)  # the bound, drawn at the bound
    loss_axis = curves[[ax.get_ylabel() for ax in curves].index("loss")]
    labels = [t.get_text() for t in loss_axis.get_yticklabels() + loss_axis.get_yticklabels(minor=True)]
    assert loss_axis.get_yscale() == "log" and any(labels) and not any("$" in t for t in labels)  # plain, no mathtext
    loss_lines = loss_axis.lines
    assert len({(line.get_linestyle(), line.get_marker()) for line in loss_lines}) == len(loss_lines)


def test_the_accuracy_panel_stays_within_zero_and_one(tmp_path, monkeypatch):
    from constrained_eq.run.plots import plot_run

    rows = ["epoch,train_loss,val_loss,val_accuracy,val_class_accuracy,val_error_rate"]
    rows += [f"{e},{1.0 / (e + 1)},{1.2 / (e + 1)},{min(1.0, 0.6 + 0.1 * e)},{0.5 + 0.1 * e},{max(0.0, 0.3 - 0.1 * e)}"
             for e in range(6)]  # the accuracy reaches 1.0, the error rate 0.0
    (tmp_path / "history.csv").write_text("\n".join(rows) + "\n")
    figures = _drawn_figures(monkeypatch)
    paths = plot_run(tmp_path)
    assert [p.stem for p in paths] == ["curves"]
    limits = {ax.get_ylabel(): ax.get_ylim() for ax in figures[0].axes}
    assert set(limits) == {"loss", "accuracy", "class accuracy", "error rate"}
    low, high = limits["accuracy"]
    assert high == 1.0 and 0.55 <= low < 0.6  # [min, 1]: the autoscale margin, but never past 1.0
    assert limits["class accuracy"][1] == 1.0 and limits["error rate"][0] == 0.0
    assert limits["loss"][1] > 1.2  # other panels keep their autoscaled range


def test_relaxed_means_significant_against_the_objective():
    T = 20
    lam = np.tile([0.01, 0.001, 0.0], (T, 1))
    slack = lam / 1.0  # u = λ/ρ at ρ = 1
    gamma = -slack
    objective = np.full(T, 0.02)  # λ u / J0 = 5e-3, 5e-5, 0
    report = build_report(gamma, lam, slack, rho=1.0, objective=objective)
    assert [layer.signature for layer in report.layers] == ["relaxed", "tight", "tight"]
    assert report.layers[0].significance == pytest.approx(0.01 * 0.01 / 0.02)
    assert report.relaxed_rtol == RELAXED_RTOL and report.objective_scale == pytest.approx(0.02)
    scaled = build_report(gamma, lam, slack, rho=1.0, objective=objective * 100)  # a 100× larger objective
    assert [layer.signature for layer in scaled.layers] == ["tight", "tight", "tight"]


def test_the_progress_bar_names_constraints_and_keeps_gamma_for_homotopy_ones():
    from constrained_eq.testing.toy_problems import VectorModel
    from constrained_eq.training.monitoring import magnitudes as _magnitudes
    from constrained_eq.training.monitoring import postfix as _postfix

    model = VectorModel(2, torch.tensor([0.3, -0.2]))
    rate = ceq.Inequality(ceq.Target(lambda m: m.x, "rate"), bound=0.1, name="parity")
    problem = ceq.ConstrainedProblem(lambda out, batch: out.pow(2).sum(), [rate])
    solver = ceq.Solver(problem, model, "lagrangian", torch.optim.SGD(model.parameters(), lr=0.0), 1.0)
    loss, shown, lambdas = _magnitudes(solver, solver.step(None))
    assert shown == {"parity": pytest.approx(0.2)}  # [x − 0.1]₊ = (0.2, 0): the largest violation
    postfix = _postfix(solver, loss, shown, lambdas)
    assert set(postfix) == {"loss", "parity"} and postfix["parity"].startswith("viol=0.2 λ=")
    assert "γ" not in "".join(postfix)
    task = ToyRotation(n_train=8, n_val=8, n_test=8)
    relaxed = task.model("vector_net", hidden=4, n_layers=2)
    homotopy = ceq.Solver(ceq.ConstrainedProblem(ceq.Objective(task.loss, task.forward), [ceq.Equality(ceq.gammas)]),
                          relaxed, "lagrangian")
    batch = next(iter(task.loaders(0, 8).train))
    postfix = _postfix(homotopy, *_magnitudes(homotopy, homotopy.step(batch)))
    assert postfix["equality_gammas"].startswith("max|γ|=")
