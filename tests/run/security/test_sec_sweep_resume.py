"""Sweeps that lose nothing: a trial stopped by Ctrl-C or a kill is run again by the next ``ceq sweep``.

A rerun completes every point of the grid exactly once; Ctrl-C prints one line naming the right command.
"""

from __future__ import annotations

import itertools
import os

import optuna
import pytest
from _toy import TOY_QUICK

from constrained_eq.run import sweep as sweep_module
from constrained_eq.run.cli import main

TOY = TOY_QUICK
GRID = {"optimizer.lr": [1e-3, 1e-2], "dual_lr": [1e-3, 1e-2]}


def _argv(tmp_path) -> list[str]:
    path = tmp_path / "toy.yaml"
    path.write_text(TOY)
    return ["sweep", str(path), "--param", "optimizer.lr=choice:1e-3,1e-2", "--param", "dual_lr=choice:1e-3,1e-2",
            "--out", str(tmp_path / "runs")]


def _study(tmp_path):
    folder = tmp_path / "runs" / "toy-sweep"
    return optuna.load_study(study_name="toy-sweep", storage=f"sqlite:///{folder / 'study.db'}")


def _complete_points(study) -> list[tuple[float, float]]:
    return sorted((t.params["optimizer.lr"], t.params["dual_lr"]) for t in study.get_trials()
                  if t.state == optuna.trial.TrialState.COMPLETE)


def test_ctrl_c_fails_the_running_trial_and_a_rerun_completes_the_grid_once(tmp_path, monkeypatch, capsys):
    calls = []
    run_trial = sweep_module.run_trial

    def stopped_on_the_second(*args, **kwargs):
        calls.append(args[1])
        if len(calls) == 2:
            raise KeyboardInterrupt
        return run_trial(*args, **kwargs)

    monkeypatch.setattr(sweep_module, "run_trial", stopped_on_the_second)
    assert main(_argv(tmp_path)) == 130
    err = capsys.readouterr().err
    assert err == "ceq: interrupted; run the same `ceq sweep` command again (the stopped trials run again)\n"
    states = [t.state for t in _study(tmp_path).get_trials()]
    assert states == [optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.FAIL]
    monkeypatch.setattr(sweep_module, "run_trial", run_trial)
    assert main(_argv(tmp_path)) == 0
    assert _complete_points(_study(tmp_path)) == sorted(itertools.product(*GRID.values()))  # each point once


def test_a_trial_left_running_by_a_killed_process_is_run_again(tmp_path, capsys):
    assert main(_argv(tmp_path) + ["--trials", "1"]) == 0  # creates the study; one point done
    study = _study(tmp_path)
    trial = study.ask({"optimizer.lr": optuna.distributions.CategoricalDistribution([1e-3, 1e-2]),
                       "dual_lr": optuna.distributions.CategoricalDistribution([1e-3, 1e-2])})
    dead = 2**22 + 12345  # above Linux's default pid_max: no such process
    trial.set_user_attr("worker", f"{__import__('socket').gethostname()}:{dead}")
    capsys.readouterr()
    assert main(_argv(tmp_path)) == 0
    assert f"trials {trial.number} were left running by a stopped sweep" in capsys.readouterr().out
    assert _complete_points(_study(tmp_path)) == sorted(itertools.product(*GRID.values()))


def test_running_trials_of_live_processes_and_other_hosts_are_left_alone():
    assert sweep_module._worker_alive(f"{__import__('socket').gethostname()}:{os.getpid()}")
    assert sweep_module._worker_alive("another-host.example:1")
    assert not sweep_module._worker_alive("") and not sweep_module._worker_alive("nonsense")


def test_a_worker_stopped_by_ctrl_c_exits_quietly_with_130(monkeypatch, capsys):
    monkeypatch.setattr(sweep_module, "_work", lambda sweep, worker: (_ for _ in ()).throw(KeyboardInterrupt))
    with pytest.raises(SystemExit) as stopped:
        sweep_module._quiet_work(None, 0)
    assert stopped.value.code == 130 and capsys.readouterr().err == ""


def test_a_sweep_with_missing_trials_exits_non_zero(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(sweep_module, "_work", lambda sweep, worker: None)  # a worker that ran nothing
    assert main(_argv(tmp_path)) == 1
    assert "0 of 4 trials finished; run the same `ceq sweep` command again" in capsys.readouterr().err
