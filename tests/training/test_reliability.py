"""Faults and long runs lose nothing: SIGKILL + resume is exact, faults stop cleanly, checkpoints run no code."""

from __future__ import annotations

import ast
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch
from _toy import TOY_ACE_EQUALITY

import constrained_eq as ceq
from constrained_eq.run.build import build
from constrained_eq.run.cli import main
from constrained_eq.run.problem_file import load_problem_file
from constrained_eq.tasks.toy_rotation import ToyRotation
from constrained_eq.training.loop import fit
from constrained_eq.training.monitoring import DivergenceError
from constrained_eq.training.settings import Limits, Logging

ROOT = Path(__file__).resolve().parents[2]
TOY = ROOT / "problems" / "toy.yaml"
WALL_CLOCK = ("seconds", "wall_seconds")


def _ceq(*args: str) -> list[str]:
    return [sys.executable, "-m", "constrained_eq.run.cli", "run", str(TOY), "--quiet", *args]


def _env() -> dict[str, str]:
    return {"PYTHONPATH": str(ROOT), "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "OMP_NUM_THREADS": "1"}


def _assert_same(a: Any, b: Any, where: str = "") -> None:
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and torch.equal(a, b), where
    elif isinstance(a, dict):
        assert isinstance(b, dict) and set(a) == set(b), where
        for key in a:
            _assert_same(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, list | tuple):
        assert len(a) == len(b), where
        for index, (x, y) in enumerate(zip(a, b, strict=True)):
            _assert_same(x, y, f"{where}[{index}]")
    else:
        assert a == b or (a != a and b != b), f"{where}: {a!r} != {b!r}"


def _metrics(run_dir: Path) -> dict[str, Any]:
    data = json.loads((run_dir / "metrics.json").read_text())
    return {k: v for k, v in data.items() if k not in WALL_CLOCK}


def test_sigkill_then_resume_equals_uninterrupted_run(tmp_path):
    epochs = "6"  # toy.yaml checkpoints every 2 epochs
    reference = subprocess.Popen(_ceq("--epochs", epochs, "--out", str(tmp_path / "a")), env=_env(), cwd=ROOT,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    killed = subprocess.Popen(_ceq("--epochs", epochs, "--out", str(tmp_path / "b")), env=_env(), cwd=ROOT,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    checkpoint = tmp_path / "b" / "toy" / "checkpoint.pt"
    deadline = time.monotonic() + 120
    while not checkpoint.exists() and killed.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    killed.send_signal(signal.SIGKILL)
    assert killed.wait(timeout=30) == -signal.SIGKILL, "the run ended before it could be killed"
    history = (tmp_path / "b" / "toy" / "history.csv").read_text().splitlines()
    assert len(history) - 1 < int(epochs), "the run was killed after its last epoch"
    assert not (tmp_path / "b" / "toy" / "metrics.json").exists()
    before_kill = torch.load(checkpoint, weights_only=True)["seconds"]  # training time up to that checkpoint
    assert before_kill > 0

    resumed = subprocess.run(_ceq("--epochs", epochs, "--out", str(tmp_path / "b"), "--resume"), env=_env(),
                             cwd=ROOT, capture_output=True, text=True, timeout=180)
    assert resumed.returncode == 0, resumed.stderr
    assert reference.wait(timeout=180) == 0, reference.stderr.read()

    a, b = tmp_path / "a" / "toy", tmp_path / "b" / "toy"
    final_a = torch.load(a / "checkpoint.pt", weights_only=True)
    final_b = torch.load(b / "checkpoint.pt", weights_only=True)
    for key in ("model", "cmp", "slacks"):  # θ and γ, λ, u
        _assert_same(final_a["solver"][key], final_b["solver"][key], key)
    _assert_same(*({k: v for k, v in c.items() if k not in WALL_CLOCK} for c in (final_a, final_b)),
                 "checkpoint")  # also optimizers, counters, RNG, best metrics
    total = json.loads((b / "metrics.json").read_text())["seconds"]
    assert total >= final_b["seconds"] > before_kill  # the killed process's epochs count in the total
    _assert_same(torch.load(a / "best.pt", weights_only=True), torch.load(b / "best.pt", weights_only=True), "best")
    assert (a / "history.csv").read_text() == (b / "history.csv").read_text()
    _assert_same(_metrics(a), _metrics(b), "metrics.json")


SMALL = TOY_ACE_EQUALITY


def _small(tmp_path: Path, text: str = SMALL) -> Path:
    path = tmp_path / "small.yaml"
    path.write_text(text)
    return path


def test_resume_with_a_changed_problem_file_is_refused(tmp_path, capsys):
    path = _small(tmp_path)
    out = str(tmp_path / "runs")
    assert main(["run", str(path), "--out", out, "--quiet", "--epochs", "1"]) == 0
    path.write_text(SMALL.replace("lr: 0.01", "lr: 0.02"))
    capsys.readouterr()
    assert main(["run", str(path), "--out", out, "--quiet", "--epochs", "1", "--resume"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"ceq: error: {path}: refusing to resume"), err
    assert "optimizer.lr: 0.01 -> 0.02" in err


def test_every_torch_load_in_the_package_uses_weights_only():
    calls = []
    for source in (ROOT / "constrained_eq").rglob("*.py"):
        for node in ast.walk(ast.parse(source.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "load" \
                    and isinstance(node.func.value, ast.Name) and node.func.value.id == "torch":
                safe = any(k.arg == "weights_only" and isinstance(k.value, ast.Constant) and k.value.value is True
                           for k in node.keywords)
                calls.append((f"{source.relative_to(ROOT)}:{node.lineno}", safe))
    assert calls, "expected at least one torch.load"
    assert [where for where, safe in calls if not safe] == []


class Payload:
    """Unpickling this would create a file: a stand-in for arbitrary code in a checkpoint."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (Path.touch, (Path(self.marker),))


def test_a_checkpoint_holding_a_pickled_object_is_refused(tmp_path, capsys):
    path = _small(tmp_path)
    out = tmp_path / "runs"
    assert main(["run", str(path), "--out", str(out), "--quiet", "--epochs", "1"]) == 0
    checkpoint = out / "small" / "checkpoint.pt"
    marker = tmp_path / "executed"
    torch.save({"solver": Payload(str(marker)), "epoch": 0}, checkpoint)
    capsys.readouterr()
    assert main(["run", str(path), "--out", str(out), "--quiet", "--epochs", "1", "--resume"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"ceq: error: {checkpoint}: damaged checkpoint: its SHA-256"), err
    assert "Traceback" not in err
    assert not marker.exists()
    (out / "small" / "checkpoints.json").unlink()  # without the checksums, weights_only=True still refuses it
    assert main(["run", str(path), "--out", str(out), "--quiet", "--epochs", "1", "--resume"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"ceq: error: {checkpoint}: refusing to load the checkpoint"), err
    assert not marker.exists()


# ----------------------------------------------------------------------------- faults during fit
class _Poisoned:
    """A loader that puts NaN in the inputs of global batch ``at`` and remembers the checkpoint then."""

    def __init__(self, loader: Any, at: int, checkpoint: Path) -> None:
        self.loader, self.at, self.seen, self.checkpoint = loader, at, 0, checkpoint
        self.generator = loader.generator
        self.snapshot: bytes | None = None

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self):
        for x, y in self.loader:
            if self.seen == self.at:
                self.snapshot = self.checkpoint.read_bytes()
                x = x.clone()
                x[0, 0, 0] = float("nan")
            self.seen += 1
            yield x, y


def _solver(**options: Any) -> tuple[Any, ceq.Solver]:
    torch.manual_seed(0)
    task = ToyRotation(n_train=32, n_val=16, n_test=16)
    loaders = task.loaders(seed=0, batch_size=16)
    model = task.model("vector_net", hidden=4, n_layers=2)
    problem = ceq.ConstrainedProblem(ceq.Objective(task.loss, task.forward), [ceq.Equality(ceq.gammas)])
    return loaders, ceq.Solver(problem, model, "lagrangian", torch.optim.Adam(model.parameters(), 1e-2), 0.05,
                               **options)


def test_nan_batch_stops_fit_with_step_and_keeps_the_checkpoint(tmp_path):
    loaders, solver = _solver()
    poisoned = _Poisoned(loaders.train, 5, tmp_path / "checkpoint.pt")  # 2 steps per epoch: inside epoch 2
    with pytest.raises(ceq.NonFiniteError) as info:
        fit(solver, poisoned, loaders.val, epochs=4, run_dir=tmp_path, progress=False)
    message = str(info.value)
    assert "step 5" in message and "(epoch 2)" in message and "is intact" in message, message
    assert "on_nonfinite: skip" in message
    assert (tmp_path / "checkpoint.pt").read_bytes() == poisoned.snapshot
    assert torch.load(tmp_path / "checkpoint.pt", weights_only=True)["epoch"] == 1


def test_nan_batch_is_skipped_and_counted(tmp_path):
    loaders, solver = _solver(on_nonfinite="skip")
    poisoned = _Poisoned(loaders.train, 5, tmp_path / "checkpoint.pt")
    result = fit(solver, poisoned, loaders.val, epochs=4, run_dir=tmp_path, progress=False)
    assert result.epochs == 4
    assert json.loads((tmp_path / "metrics.json").read_text())["skipped_steps"] == 1


def test_problem_file_on_nonfinite_reaches_the_solver(tmp_path):
    spec = load_problem_file(_small(tmp_path, SMALL.replace("batch_size: 16}", "batch_size: 16, "
                                                            "on_nonfinite: skip}")))
    assert build(spec).solver.on_nonfinite == "skip"
    assert build(load_problem_file(_small(tmp_path))).solver.on_nonfinite == "raise"


def test_diverging_duals_are_reported_with_the_learning_rates(tmp_path):
    loaders, solver = _solver()
    with pytest.raises(DivergenceError) as info:  # λ = η_d Σ|γ| ≈ 0.05·1 after the first steps: past 1e-3
        fit(solver, loaders.train, loaders.val, epochs=3, run_dir=tmp_path, progress=False,
            limits=Limits(divergence=1e-3), logging=Logging(every=2))
    message = str(info.value)
    assert "step 1 (epoch 0)" in message and "max|λ| of constraint 'equality_gammas'" in message, message
    assert "(limit 0.001)" in message, message
    assert "dual_lr=0.05" in message and "variable_lr" in message, message
    assert "No checkpoint was written yet" in message


def test_dual_growth_warns(tmp_path):
    loaders, solver = _solver()
    with pytest.warns(RuntimeWarning, match="grew from"):
        import constrained_eq.training.monitoring as monitoring

        original = monitoring.DIVERGENCE_GROWTH
        monitoring.DIVERGENCE_GROWTH = 1e-9
        try:
            fit(solver, loaders.train, None, epochs=2, progress=False, logging=Logging(every=1))
        finally:
            monitoring.DIVERGENCE_GROWTH = original


def test_cli_reports_a_fault_with_exit_status_1(tmp_path, monkeypatch, capsys):
    import constrained_eq.run.runner as build_module

    def failing_fit(*args: Any, **kwargs: Any) -> None:
        raise ceq.NonFiniteError("step 3: constraint 'gammas' has non-finite values; nothing was updated")

    monkeypatch.setattr(build_module, "fit", failing_fit)
    path = _small(tmp_path)
    assert main(["run", str(path), "--out", str(tmp_path / "runs"), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"ceq: error: {path}: training stopped: step 3: constraint 'gammas'"), err
