"""fit: the run folder, best-epoch selection, refusals; the run-folder I/O helpers."""

import pytest
import torch

import constrained_eq as ceq
from constrained_eq.tasks.toy_rotation import ToyRotation
from constrained_eq.training.callbacks import LambdaCallback
from constrained_eq.training.loop import fit
from constrained_eq.training.run_folder import CsvStream, read_csv, read_json
from constrained_eq.training.settings import Evaluation, FitResult, Selection


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
                 evaluation=Evaluation(metrics={"equivariance_error": task.equivariance_error}))
    assert isinstance(result, FitResult) and result.epochs == 3 and result.run_dir == tmp_path
    for name in ("metrics.json", "history.csv", "checkpoint.pt", "best.pt"):
        assert (tmp_path / name).exists(), name
    assert not (tmp_path / "plots").exists()  # fit draws nothing; plot_run draws the folder's plots
    ceq.plot_run(tmp_path)
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
    fit(solver, loaders.train, loaders.val, epochs=1, run_dir=tmp_path, progress=False)
    with pytest.raises(ValueError, match="already holds a checkpoint; pass resume=True"):
        fit(solver, loaders.train, loaders.val, epochs=1, run_dir=tmp_path, progress=False)


def test_fit_resume_needs_a_checkpoint(tmp_path):
    _, loaders, solver = _setup()
    with pytest.raises(ValueError, match="resume=True needs a checkpoint"):
        fit(solver, loaders.train, epochs=1, run_dir=tmp_path, resume=True, progress=False)


def test_fit_checks_its_arguments():
    _, loaders, solver = _setup()
    with pytest.raises(ValueError, match=r"expected 'epochs' to be an integer ≥ 1 \(got 0\)"):
        fit(solver, loaders.train, epochs=0)
    with pytest.raises(ValueError, match=r"expected 'selection.column' to be 'feasible' or one of the logged columns"):
        fit(solver, loaders.train, loaders.val, epochs=1, progress=False, selection=Selection(column="val_acc"))
    with pytest.raises(ValueError, match="expected 'selection.mode' to be 'min' or 'max'"):
        fit(solver, loaders.train, epochs=1, progress=False, selection=Selection(mode="largest"))


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

    from constrained_eq._utils.loaders import to_device

    batch = Batch.from_data_list([Data(pos=torch.zeros(2, 3)), Data(pos=torch.ones(3, 3))])
    moved = to_device((batch, torch.zeros(1)), torch.device("cpu"))
    assert isinstance(moved[0], Batch) and moved[0].pos.shape == (5, 3)


@pytest.mark.parametrize(("mode", "best"), [("max", 1), ("min", 0)])
def test_select_mode_picks_the_largest_accuracy_or_the_smallest_value(mode, best):
    _, loaders, solver = _setup("lagrangian")
    accuracies = iter([0.2, 0.9, 0.5])
    result = fit(solver, loaders.train, loaders.val, epochs=3, progress=False,
                 evaluation=Evaluation(evaluate=lambda model, loader: {"accuracy": next(accuracies)}),
                 selection=Selection(column="val_accuracy", mode=mode))
    assert result.best_epoch == best


def test_modelnet_selection_maximises_accuracy():
    from types import SimpleNamespace

    from constrained_eq.run.selection import selection_mode
    from constrained_eq.tasks.modelnet import ModelNet
    from constrained_eq.tasks.nbody import NBody

    def problem(select):  # the two fields of a typed Problem that the selection reads
        return SimpleNamespace(evaluation=SimpleNamespace(select=select), strategy="vanilla")

    assert selection_mode(problem("val_class_accuracy"), False, ModelNet.__new__(ModelNet)) == "max"
    assert selection_mode(problem("val_loss"), False, ModelNet.__new__(ModelNet)) == "min"
    assert selection_mode(problem("val_mse"), False, NBody.__new__(NBody)) == "min"


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
    import constrained_eq.training.loop as train

    clock = _Clock()
    monkeypatch.setattr(train, "time", clock)

    def dies_at_epoch_2(epoch: int, row: dict) -> None:
        clock.on_epoch(epoch, row)
        if epoch == 2:
            raise KeyboardInterrupt  # before epoch 2's checkpoint, like a kill

    _, loaders, solver = _setup("lagrangian")
    with pytest.raises(KeyboardInterrupt):
        fit(solver, loaders.train, loaders.val, epochs=4, run_dir=tmp_path, progress=False,
            callbacks=[LambdaCallback(on_epoch_end=dies_at_epoch_2)])
    assert not (tmp_path / "metrics.json").exists()
    assert torch.load(tmp_path / "checkpoint.pt", weights_only=True)["seconds"] == 200.0  # epochs 0 and 1
    _, loaders, solver = _setup("lagrangian")
    fit(solver, loaders.train, loaders.val, epochs=4, run_dir=tmp_path, resume=True, progress=False,
        callbacks=[LambdaCallback(on_epoch_end=clock.on_epoch)])
    assert torch.load(tmp_path / "checkpoint.pt", weights_only=True)["seconds"] == 400.0  # 0, 1 and then 2, 3
    assert read_json(tmp_path / "metrics.json")["seconds"] == 400.0


class _Recorder(ceq.Callback):
    """Every hook call, in order, with what it was given."""

    def __init__(self, calls):
        self.calls = calls

    def on_fit_start(self, solver):
        self.calls.append(("fit_start", solver))

    def on_epoch_start(self, epoch):
        self.calls.append(("epoch_start", epoch))

    def on_epoch_end(self, epoch, row):
        self.calls.append(("epoch_end", epoch, sorted(row)))
        row["extra.column"] = 10.0 * epoch

    def on_fit_end(self, result):
        self.calls.append(("fit_end", result.epochs))


def test_callbacks_are_called_at_each_hook_in_order_and_add_columns(tmp_path):
    _, loaders, solver = _setup()
    calls = []
    lam = []
    result = fit(solver, loaders.train, loaders.val, epochs=2, run_dir=tmp_path, progress=False,
                 callbacks=[_Recorder(calls), LambdaCallback(on_epoch_end=lambda epoch, row: lam.append(row["extra.column"]))])
    assert [c[0] for c in calls] == ["fit_start", "epoch_start", "epoch_end", "epoch_start", "epoch_end", "fit_end"]
    assert calls[0][1] is solver and calls[-1] == ("fit_end", 2)
    assert [c[1] for c in calls if c[0] == "epoch_start"] == [0, 1]
    assert "train_loss" in calls[2][2] and "val_loss" in calls[2][2]  # the row holds the epoch's columns
    assert lam == [0.0, 10.0]  # later callbacks see what earlier ones added
    history = (tmp_path / "history.csv").read_text().splitlines()
    assert "extra.column" in history[0].split(",") and result.epochs == 2


def test_fit_refuses_bad_callbacks_and_settings_groups():
    _, loaders, solver = _setup()
    with pytest.raises(TypeError, match=r"expected callbacks\[1\] to have one of the hooks"):
        fit(solver, loaders.train, epochs=1, progress=False, callbacks=[ceq.Callback(), object()])
    with pytest.raises(TypeError, match="LambdaCallback: unknown hook 'on_epoch'"):
        LambdaCallback(on_epoch=print)
    with pytest.raises(TypeError, match="expected 'evaluation' to be of type Evaluation"):
        fit(solver, loaders.train, epochs=1, progress=False, evaluation={"every": 2})
    with pytest.raises(ValueError, match=r"expected 'evaluation.every' to be an integer ≥ 1 \(got 0\)"):
        fit(solver, loaders.train, epochs=1, progress=False, evaluation=ceq.Evaluation(every=0))
    with pytest.raises(ValueError, match=r"expected 'averaging.kind' to be one of 'none', 'uniform', 'ema'"):
        fit(solver, loaders.train, epochs=1, progress=False, averaging=ceq.Averaging(kind="swa"))


def test_fit_signature_is_explicit():
    """No ``**options``: every setting is a named parameter, the groups typed."""
    import inspect

    parameters = inspect.signature(fit).parameters
    assert not any(p.kind is p.VAR_KEYWORD for p in parameters.values())
    assert [n for n, p in parameters.items() if p.kind is p.KEYWORD_ONLY] == [
        "epochs", "run_dir", "resume", "test_loader", "checkpoint_every", "progress", "evaluation", "selection",
        "averaging", "limits", "logging", "callbacks"]
