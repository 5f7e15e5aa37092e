"""The ceq command: a real run via subprocess, problem-file errors with file:line, refused resumes."""

import subprocess
import sys
from pathlib import Path

import pytest
from _toy import TOY_LAGRANGIAN

from constrained_eq.run.cli import main
from constrained_eq.run.problem_file import load_problem_file

ROOT = Path(__file__).resolve().parents[2]
TOY = ROOT / "problems" / "toy.yaml"

SMALL = TOY_LAGRANGIAN


def _write(tmp_path, text, name="p.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_ceq_run_toy_writes_the_run_folder(tmp_path):
    env = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}
    proc = subprocess.run([sys.executable, "-m", "constrained_eq.run.cli", "run", str(TOY), "--epochs", "2",
                           "--out", str(tmp_path), "--quiet"], capture_output=True, text=True, env=env, cwd=ROOT,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    run_dir = tmp_path / "toy"
    for name in ("metrics.json", "history.csv", "checkpoint.pt", "best.pt", "problem.json"):
        assert (run_dir / name).exists(), name
    assert list((run_dir / "plots").glob("*.png"))
    assert "test_projected" in proc.stdout


def test_malformed_file_exits_2_with_file_and_line(tmp_path):
    path = _write(tmp_path, SMALL.replace("  batch_size: 16", "  batch_size: 16\n  epoch: 3"))
    proc = subprocess.run([sys.executable, "-m", "constrained_eq.run.cli", "run", str(path), "--out", str(tmp_path)],
                          capture_output=True, text=True, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 2
    assert f"ceq: error: {path}:13: Unknown key 'training.epoch'; expected one of 'epochs'" in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("old,new,line,message", [
    ("  epochs: 2", "  epochs: two", 11, "Expected 'training.epochs' to be an integer in [1, 100000] (got 'two')"),
    ("formulation: lagrangian", "formulation: lagrange", 9, "Expected 'formulation.name' to be one of 'lagrangian'"),
    ("  name: toy_rotation", "  name: toy", 2, "Expected 'task.name' to be one of 'toy_rotation', 'nbody'"),
    ("hidden: 4", "hidden: 4, width: 3", 6, "Unknown key 'model.options.width'; expected one of 'hidden'"),
    ("  - Equality(target=gammas)", "  - Equalty(target=gammas)", 8,
     "Expected the kind of 'constraints[0]' to be one of 'Equality'"),
    ("  batch_size: 16", "  batch_size: [16", 12, "invalid YAML"),
])
def test_problem_file_errors_name_file_line_and_choices(tmp_path, old, new, line, message):
    path = _write(tmp_path, SMALL.replace(old, new))
    with pytest.raises(ValueError) as info:
        load_problem_file(path)
    text = str(info.value)
    assert text.startswith(f"{path}:"), text
    assert message in text
    if "YAML" not in message:
        assert text.startswith(f"{path}:{line}: "), text


def test_defaults_are_filled_in(tmp_path):
    spec = load_problem_file(_write(tmp_path, SMALL))
    assert spec["strategy"] == "custom" and spec["optimizer"] == {"name": "adam", "lr": 1e-3, "weight_decay": 0.0,
                                                                  "options": {}, "groups": []}
    assert spec["constrained_optimizer"] == "simultaneous"
    assert spec["training"]["seed"] == 0 and spec["evaluation"]["project"] is True


def test_resume_with_a_changed_file_is_refused(tmp_path, capsys):
    path = _write(tmp_path, SMALL)
    out = str(tmp_path / "runs")
    assert main(["run", str(path), "--out", out, "--quiet"]) == 0
    assert main(["run", str(path), "--out", out, "--quiet"]) == 2
    assert "already holds a run; pass --resume" in capsys.readouterr().err
    assert main(["run", str(path), "--out", out, "--quiet", "--resume", "--epochs", "3"]) == 2
    err = capsys.readouterr().err
    assert "refusing to resume" in err and "training.epochs: 2 -> 3" in err
    path.write_text(SMALL)  # unchanged content resumes (nothing left to do)
    assert main(["run", str(path), "--out", out, "--quiet", "--resume"]) == 0


def test_report_prints_summary_and_writes_plots(tmp_path, capsys):
    path = _write(tmp_path, SMALL.replace("epochs: 2", "epochs: 1"))
    out = tmp_path / "runs"
    assert main(["run", str(path), "--out", str(out), "--quiet", "--strategy", "ace_resilient"]) == 0
    capsys.readouterr()
    assert main(["report", str(out / "p-ace_resilient")]) == 0
    printed = capsys.readouterr().out
    assert '"strategy": "ace_resilient"' in printed and "curves.png" in printed
    assert main(["report", str(tmp_path / "nowhere")]) == 2


@pytest.mark.parametrize(("strategy", "label", "signature"), [
    ("augmentation", "SymmetryReport (none)", "free"),
    ("cr", "SymmetryReport (schedule)", "scheduled"),
    ("penalty", "SymmetryReport (penalty)", "penalised"),
    ("ace_augmented", "SymmetryReport (augmented_lagrangian)", "too-short"),  # one epoch: one logged point
    ("ace_resilient", "SymmetryReport (resilient, rho=1)", "too-short"),
])
def test_the_symmetry_report_names_the_run_formulation(tmp_path, strategy, label, signature):
    path = _write(tmp_path, SMALL.replace("epochs: 2", "epochs: 1"))
    assert main(["run", str(path), "--out", str(tmp_path / "runs"), "--quiet", "--strategy", strategy]) == 0
    report = (tmp_path / "runs" / f"p-{strategy}" / "symmetry_report.txt").read_text().splitlines()
    assert report[0] == label
    assert [row.split()[-1] for row in report[2:4]] == [signature, signature]
    contributions = [float(row.split()[4]) for row in report[2:4]]  # |γ f_neq|, measured at validation
    assert all(c >= 0.0 for c in contributions)  # finite: nan compares False
