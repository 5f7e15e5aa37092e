"""fit: the run folder, best-epoch selection, refusals; the run-folder I/O helpers."""

import pytest
import torch

import constrained_eq as ceq
from constrained_eq.run.fit_settings import FitResult
from constrained_eq.run.runs import CsvStream, read_csv, read_json
from constrained_eq.run.train import fit
from constrained_eq.tasks.toy_rotation import ToyRotation


def _setup(formulation="resilient"):
    task = ToyRotation(n_train=32, n_val=16, n_test=16, breaking=0.3)
    loaders = task.loaders(seed=0, batch_size=16)
    model = task.model("vector_net", hidden=4, n_layers=2)
    problem = ceq.ConstrainedProblem(ceq.Objective(task.loss, task.forward), [ceq.Equality(ceq.gammas)])
    solver = ceq.Solver(problem, model, formulation, torch.optim.Adam(model.parameters(), 1e-2), 0.05)
    return task, loaders, solver


def test_fit_writes_the_run_folder(tmp_path):
    task, loaders, solver = _setup()
    result = fit(solver, loaders.train, loaders.val, epochs=3, run_dir=tmp_path, progress=False,
                 metrics={"equivariance_error": task.equivariance_error})
    assert isinstance(result, FitResult) and result.epochs == 3 and result.run_dir == tmp_path
    for name in ("metrics.json", "history.csv", "checkpoint.pt", "best.pt"):
        assert (tmp_path / name).exists(), name
    plots = sorted(p.name for p in (tmp_path / "plots").glob("*.png"))
    assert {"curves.png", "equality_gammas_value.png", "equality_gammas_lambda.png", "equality_gammas_slack.png",
            "equivariance_error.png"} <= set(plots)
    history = read_csv(tmp_path / "history.csv")
    assert history["epoch"] == [0.0, 1.0, 2.0]
    for column in ("train_loss", "val_loss", "val_equivariance_error", "equality_gammas.value.1",
                   "equality_gammas.lambda.1", "equality_gammas.slack.1"):
        assert column in history, column
    best = torch.load(tmp_path / "best.pt", weights_only=True)
    assert best["epoch"] == result.best_epoch
    assert min(history["val_loss"]) == result.best_metrics["val_loss"]
    checkpoint = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert checkpoint["epoch"] == 2 and checkpoint["loader_rng"] is not None
    summary = read_json(tmp_path / "metrics.json")
    assert summary["best_epoch"] == result.best_epoch and summary["final"] == result.final_metrics
    assert not list(tmp_path.glob(".*.tmp"))  # atomic writes leave no temporary files


def test_fit_without_validation_selects_on_train_loss():
    _, loaders, solver = _setup("lagrangian")
    result = fit(solver, loaders.train, epochs=2, progress=False)
    assert result.run_dir is None and result.best_epoch is not None and "train_loss" in result.best_metrics


def test_fit_refuses_existing_checkpoint_without_resume(tmp_path):
    _, loaders, solver = _setup()
    fit(solver, loaders.train, loaders.val, epochs=1, run_dir=tmp_path, progress=False, plot=False)
    with pytest.raises(ValueError, match="already holds a checkpoint; pass resume=True"):
        fit(solver, loaders.train, loaders.val, epochs=1, run_dir=tmp_path, progress=False, plot=False)


def test_fit_resume_needs_a_checkpoint(tmp_path):
    _, loaders, solver = _setup()
    with pytest.raises(ValueError, match="resume=True needs a checkpoint"):
        fit(solver, loaders.train, epochs=1, run_dir=tmp_path, resume=True, progress=False)


def test_fit_checks_its_arguments():
    _, loaders, solver = _setup()
    with pytest.raises(ValueError, match=r"expected 'epochs' to be an integer ≥ 1 \(got 0\)"):
        fit(solver, loaders.train, epochs=0)
    with pytest.raises(ValueError, match=r"expected 'select' to be 'feasible' or one of the logged columns"):
        fit(solver, loaders.train, loaders.val, epochs=1, select="val_acc", progress=False)
    with pytest.raises(ValueError, match="expected 'select_mode' to be 'min' or 'max'"):
        fit(solver, loaders.train, epochs=1, select_mode="largest", progress=False)


def test_csv_stream_extends_header_and_truncates(tmp_path):
    stream = CsvStream(tmp_path / "h.csv")
    stream.append({"epoch": 0, "a": 1.0})
    stream.append({"epoch": 1, "a": 2.0, "b": 3.0})
    assert (tmp_path / "h.csv").read_text().splitlines() == ["epoch,a,b", "0,1.0,", "1,2.0,3.0"]
    assert len(stream) == 2
    stream.truncate(1)
    assert len(stream) == len(CsvStream(tmp_path / "h.csv")) == 1
    stream.append({"epoch": 1, "a": "x\ny"})  # a quoted newline is one row, not two
    assert len(stream) == len(CsvStream(tmp_path / "h.csv")) == 2
    stream.truncate(0)
    assert len(stream) == 0
    stream.append({"epoch": 0})
    assert len(stream) == 1 and (tmp_path / "h.csv").read_text().splitlines() == ["epoch", "0"]


def test_to_device_moves_pyg_batches():
    from torch_geometric.data import Batch, Data

    from constrained_eq.core._loaders import to_device

    batch = Batch.from_data_list([Data(pos=torch.zeros(2, 3)), Data(pos=torch.ones(3, 3))])
    moved = to_device((batch, torch.zeros(1)), torch.device("cpu"))
    assert isinstance(moved[0], Batch) and moved[0].pos.shape == (5, 3)


@pytest.mark.parametrize(("mode", "best"), [("max", 1), ("min", 0)])
def test_select_mode_picks_the_largest_accuracy_or_the_smallest_value(mode, best):
    _, loaders, solver = _setup("lagrangian")
    accuracies = iter([0.2, 0.9, 0.5])
    result = fit(solver, loaders.train, loaders.val, epochs=3, progress=False, select="val_accuracy",
                 select_mode=mode, evaluate=lambda model, loader: {"accuracy": next(accuracies)})
    assert result.best_epoch == best


def test_modelnet_selection_maximises_accuracy():
    from constrained_eq.run.build import _selection_mode
    from constrained_eq.tasks.modelnet import ModelNet
    from constrained_eq.tasks.nbody import NBody

    spec = {"evaluation": {"select": "val_class_accuracy"}, "strategy": "vanilla"}
    assert _selection_mode(spec, False, ModelNet.__new__(ModelNet)) == "max"
    assert _selection_mode({**spec, "evaluation": {"select": "val_loss"}}, False, ModelNet.__new__(ModelNet)) == "min"
    assert _selection_mode({**spec, "evaluation": {"select": "val_mse"}}, False, NBody.__new__(NBody)) == "min"


class _Clock:
    """A stand-in for ``time.perf_counter`` in the trainer: each epoch 'takes' 100 s."""

    def __init__(self) -> None:
        self.now = 0.0

    def perf_counter(self) -> float:
        return self.now

    def on_epoch(self, epoch: int, row: dict) -> None:
        self.now += 100.0


def test_training_seconds_add_up_over_a_killed_run_and_its_resume(tmp_path, monkeypatch):
    """metrics.json's seconds count the epochs of the interrupted process (kept in the checkpoint)."""
    import constrained_eq.run.train as train

    clock = _Clock()
    monkeypatch.setattr(train, "time", clock)

    def dies_at_epoch_2(epoch: int, row: dict) -> None:
        clock.on_epoch(epoch, row)
        if epoch == 2:
            raise KeyboardInterrupt  # before epoch 2's checkpoint, like a kill

    _, loaders, solver = _setup("lagrangian")
    with pytest.raises(KeyboardInterrupt):
        fit(solver, loaders.train, loaders.val, epochs=4, run_dir=tmp_path, progress=False, plot=False,
            on_epoch=dies_at_epoch_2)
    assert not (tmp_path / "metrics.json").exists()
    assert torch.load(tmp_path / "checkpoint.pt", weights_only=True)["seconds"] == 200.0  # epochs 0 and 1
    _, loaders, solver = _setup("lagrangian")
    fit(solver, loaders.train, loaders.val, epochs=4, run_dir=tmp_path, resume=True, progress=False, plot=False,
        on_epoch=clock.on_epoch)
    assert torch.load(tmp_path / "checkpoint.pt", weights_only=True)["seconds"] == 400.0  # 0, 1 and then 2, 3
    assert read_json(tmp_path / "metrics.json")["seconds"] == 400.0
