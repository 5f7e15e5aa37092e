"""A sweep's settings without running it: the study's direction, its storage, and how each parameter is drawn."""

from __future__ import annotations

from pathlib import Path

import optuna  # the 'test' extra installs the 'sweep' extra's Optuna
import pytest

from constrained_eq.run.sweep import _direction
from constrained_eq.run.sweep_file import Sweep, parse_param


@pytest.mark.parametrize(("task", "select", "direction"), [
    ("modelnet", "val_class_accuracy", "maximize"),  # an accuracy: larger is better
    ("modelnet", "val_accuracy", "maximize"),
    ("modelnet", "val_loss", "minimize"),
    ("nbody", "val_loss", "minimize"),
    ("modelnet", "auto", "minimize"),  # auto selects a validation loss
])
def test_the_study_maximises_exactly_the_metrics_the_task_wants_large(task, select, direction):
    from types import SimpleNamespace

    problem = SimpleNamespace(task=SimpleNamespace(name=task), evaluation=SimpleNamespace(select=select))  # what it reads
    assert _direction(problem) == direction


def test_a_given_storage_is_used_and_the_default_is_study_db_in_the_sweep_folder(tmp_path):
    param = parse_param("dual_lr=choice:1e-3,1e-2")
    given = Sweep(Path("toy.yaml"), [param], storage="postgresql://db.example/ceq", out=tmp_path / "runs")
    assert given.storage_url() == "postgresql://db.example/ceq"
    default = Sweep(Path("toy.yaml"), [param], out=tmp_path / "runs")
    assert default.storage_url() == f"sqlite:///{(tmp_path / 'runs' / 'toy-sweep' / 'study.db').resolve()}"


@pytest.mark.parametrize(("text", "distribution"), [
    ("optimizer.lr=loguniform:1e-4:1e-2", optuna.distributions.FloatDistribution(1e-4, 1e-2, log=True)),
    ("optimizer.weight_decay=uniform:0:0.5", optuna.distributions.FloatDistribution(0.0, 0.5, log=False)),
    ("training.batch_size=int:8:64", optuna.distributions.IntDistribution(8, 64)),
    ("strategy=choice:ace_equality,cr", optuna.distributions.CategoricalDistribution(["ace_equality", "cr"])),
])
def test_each_kind_of_parameter_is_drawn_from_its_distribution(text, distribution):
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    param = parse_param(text)
    trial = optuna.create_study().ask()
    param.suggest(trial)
    assert trial.distributions == {param.name: distribution}
