"""``ceq sweep`` on Optuna: parameters, sweep files, and a 2-worker SQLite sweep on the toy problem."""

from __future__ import annotations

import csv
import itertools
import json
import sys
from pathlib import Path

import optuna  # the 'test' extra installs the 'sweep' extra's Optuna
import pytest
from _toy import TOY_QUICK

from constrained_eq.run.cli import _parser, _sweep_of, main
from constrained_eq.run.problem_yaml import ProblemFileError
from constrained_eq.run.sweep_file import Param, check_sweep, load_sweep, parse_param

ROOT = Path(__file__).resolve().parents[2]
TOY = TOY_QUICK


def _file(tmp_path, text=TOY):
    path = tmp_path / "toy.yaml"
    path.write_text(text)
    return path


def test_two_workers_four_trials_sqlite_end_with_four_distinct_finished_trials(tmp_path, capsys):
    out = tmp_path / "runs"
    assert main(["sweep", str(_file(tmp_path)), "--param", "optimizer.lr=choice:1e-3,1e-2",
                 "--param", "dual_lr=choice:1e-3,1e-2", "--trials", "4", "--workers", "2", "--out", str(out)]) == 0
    folder = out / "toy-sweep"
    study = optuna.load_study(study_name="toy-sweep", storage=f"sqlite:///{folder / 'study.db'}")
    trials = study.get_trials()
    assert len(trials) == 4 and all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)
    points = {(t.params["optimizer.lr"], t.params["dual_lr"]) for t in trials}
    assert points == set(itertools.product([1e-3, 1e-2], [1e-3, 1e-2]))  # 4 distinct: the whole grid
    for trial in trials:  # each trial is an ordinary run folder; its value is the run's selection metric
        run = folder / f"trial-{trial.number:04d}" / "seed-0"
        summary = json.loads((run / "metrics.json").read_text())
        problem = json.loads((run / "problem.json").read_text())["problem"]
        assert trial.value == summary["best"][summary["select"]] and summary["select"] == "val_projected_loss"
        assert (problem["optimizer"]["lr"], problem["dual_lr"]) == (trial.params["optimizer.lr"], trial.params["dual_lr"])
        assert (run / "history.csv").exists()
    rows = list(csv.DictReader(open(folder / "results.csv")))
    assert [float(r["objective"]) for r in rows] == sorted(t.value for t in trials)  # best (smallest) first
    assert (folder / "sweep.png").stat().st_size > 0 and (folder / "results.md").exists()
    assert f"wrote {folder / 'sweep.png'}" in capsys.readouterr().out
    # asking again adds nothing: the study already holds its 4 trials
    assert main(["sweep", str(_file(tmp_path)), "--param", "optimizer.lr=choice:1e-3,1e-2",
                 "--param", "dual_lr=choice:1e-3,1e-2", "--trials", "4", "--out", str(out)]) == 0
    assert len(optuna.load_study(study_name="toy-sweep", storage=f"sqlite:///{folder / 'study.db'}").trials) == 4


def test_seeds_average_into_the_objective(tmp_path):
    out = tmp_path / "runs"
    assert main(["sweep", str(_file(tmp_path)), "--param", "optimizer.lr=loguniform:1e-3:1e-2", "--seeds", "0,1",
                 "--trials", "1", "--out", str(out), "--study", "s"]) == 0
    (trial,) = optuna.load_study(study_name="s", storage=f"sqlite:///{out / 's' / 'study.db'}").trials
    assert 1e-3 <= trial.params["optimizer.lr"] <= 1e-2
    scores = []
    for seed in (0, 1):
        summary = json.loads((out / "s" / "trial-0000" / f"seed-{seed}" / "metrics.json").read_text())
        scores.append(summary["best"][summary["select"]])
        assert trial.user_attrs[f"seed_{seed}"] == scores[-1]
    assert trial.value == pytest.approx((scores[0] + scores[1]) / 2, rel=1e-12) and scores[0] != scores[1]


@pytest.mark.parametrize(("text", "param"), [
    ("optimizer.lr=loguniform:1e-4:1e-2", Param("optimizer.lr", "loguniform", (1e-4, 1e-2), "")),
    ("dual_lr=choice:1e-3,1e-2", Param("dual_lr", "choice", (1e-3, 1e-2), "")),
    ("strategy=choice:ace_equality,cr", Param("strategy", "choice", ("ace_equality", "cr"), "")),
    ("training.batch_size=int:8:64", Param("training.batch_size", "int", (8, 64), "")),
    ("optimizer.weight_decay=uniform:0:.5", Param("optimizer.weight_decay", "uniform", (0.0, 0.5), "")),
])
def test_parse_param(text, param):
    parsed = parse_param(text)
    assert (parsed.name, parsed.kind, parsed.values) == (param.name, param.kind, param.values)
    assert all(type(a) is type(b) for a, b in zip(parsed.values, param.values, strict=True))


@pytest.mark.parametrize(("text", "message"), [
    ("optimizer.lr", "Expected KEY=KIND:VALUES"),
    ("optimizer.lr=normal:0:1", "Expected KEY=KIND:VALUES with KIND one of choice, loguniform, uniform, int"),
    ("optimizer.lr=loguniform:0:1e-2", "Expected loguniform:LOW:HIGH with numbers > 0 LOW < HIGH"),
    ("optimizer.lr=uniform:1:1", "Expected uniform:LOW:HIGH with numbers LOW < HIGH"),
    ("training.epochs=int:1:2.5", "Expected int:LOW:HIGH with integers LOW < HIGH"),
    ("dual_lr=choice:1e-3,0.001", "Expected distinct choices"),
])
def test_bad_params_name_the_flag(text, message):
    with pytest.raises(ValueError, match="^" + f"--param {text}: {message}".replace("(", r"\(").replace("[", r"\[")
                       .replace("+", r"\+").replace(".", r"\.")):
        parse_param(text)


def test_a_value_the_schema_refuses_fails_before_any_run(tmp_path, capsys):
    path = _file(tmp_path)
    assert main(["sweep", str(path), "--param", "training.epochs=choice:1,0", "--out", str(tmp_path / "runs")]) == 2
    assert capsys.readouterr().err.strip() == (f"ceq: error: {path}: --param training.epochs=choice:1,0: Expected "
                                               "'training.epochs' to be an integer in [1, 100000] (got 0)")
    assert main(["sweep", str(path), "--param", "optimizer.lr=loguniform:1e-4:1e-2", "--out",
                 str(tmp_path / "runs")]) == 2
    assert "Expected '--trials N' for a sweep with a loguniform" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


def test_missing_optuna_names_the_extra(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "optuna", None)
    assert main(["sweep", str(_file(tmp_path)), "--param", "dual_lr=choice:1e-3,1e-2"]) == 2
    assert "ceq sweep needs Optuna: pip install 'constrained_eq[sweep]'" in capsys.readouterr().err


def test_shipped_nbody_sweeps_are_table_a():
    """The N-body grids of ACE Table 4 (SPEC Table A): primal {5e-4, 8e-4, 9e-4, 1e-3, 5e-3}, dual {5e-5, 1e-4, 8e-4}."""
    files = sorted((ROOT / "sweeps").glob("nbody_*.yaml"))
    assert {f.name for f in files} >= {"nbody_table_a_ace_equality.yaml", "nbody_table_a_ace_resilient.yaml"}
    for file in files:
        sweep = _sweep_of(_parser().parse_args(["sweep", str(file)]))
        check_sweep(sweep)  # every grid value is accepted by the problem file
        grid = sweep.grid
        assert grid == {"optimizer.lr": [5e-4, 8e-4, 9e-4, 1e-3, 5e-3], "dual_lr": [5e-5, 1e-4, 8e-4]}
        assert sweep.n_trials() == 15
        if "table_a" in file.name:
            assert sweep.seeds == [0, 1, 2, 3, 4] and sweep.problem.name == "nbody_full.yaml"
            assert sweep.overrides[0].value == file.stem.removeprefix("nbody_table_a_")


def test_sweep_file_mistakes_name_file_and_line(tmp_path):
    _file(tmp_path)
    bad = tmp_path / "s.yaml"
    bad.write_text("problem: toy.yaml\nparams:\n  dual_lr: choice:1e-3\n  optimizer.lr: gauss:1\n")
    with pytest.raises(ProblemFileError, match=r"s\.yaml:4: params: optimizer\.lr=gauss:1: Expected KEY=KIND"):
        load_sweep(bad)
    bad.write_text("problem: toy.yaml\nseeds: 3\n")
    with pytest.raises(ProblemFileError, match=r"s\.yaml:2: Expected 'seeds' to be a list of integers \(got 3\)"):
        load_sweep(bad)
    bad.write_text("problem: toy.yaml\nparam: {}\n")
    with pytest.raises(ProblemFileError, match=r"s\.yaml:2: Unknown key 'param'"):
        load_sweep(bad)


def test_a_diverging_trial_is_recorded_as_failed_and_the_sweep_goes_on(tmp_path):
    out = tmp_path / "runs"
    assert main(["sweep", str(_file(tmp_path)), "--param", "optimizer.lr=choice:1e-2,1e30", "--out", str(out)]) == 0
    trials = {t.params["optimizer.lr"]: t for t in
              optuna.load_study(study_name="toy-sweep", storage=f"sqlite:///{out / 'toy-sweep' / 'study.db'}").trials}
    assert len(trials) == 2 and trials[1e-2].state == optuna.trial.TrialState.COMPLETE  # each point once
    assert trials[1e30].state == optuna.trial.TrialState.FAIL and trials[1e30].user_attrs["error"].startswith("NonFiniteError: step 1:")
    rows = list(csv.DictReader(open(out / "toy-sweep" / "results.csv")))
    assert [(r["state"], r["optimizer.lr"]) for r in rows] == [("COMPLETE", "0.01"), ("FAIL", "1e+30")]


def test_a_broken_file_is_reported_before_anything_is_printed(tmp_path, capsys):
    path = tmp_path / "broken.yaml"
    path.write_text("task: [\n")
    assert main(["sweep", str(path), "--param", "dual_lr=choice:1e-3,1e-2", "--out", str(tmp_path / "runs")]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.startswith(f"ceq: error: {path}:2: invalid YAML")
    assert not (tmp_path / "runs").exists()
