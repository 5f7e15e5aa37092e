"""SolverModule in Lightning (one process): the plain Solver loop's steps, its columns logged, exact resume.

* every registered formulation takes the same steps under ``Trainer.fit`` as in the plain loop, bitwise;
* the loggers get, per step, the loss, the Lagrangian and γ, λ, u under history.csv's names, and per
  evaluation the validation loss and the constraints measured over the split (as ``measure`` gives them);
* a run resumed with ``Trainer.fit(ckpt_path=...)`` logs the same history and ends where an uninterrupted
  run ends, bitwise.
"""

from __future__ import annotations

from types import SimpleNamespace

import integration_toy as toy
import lightning.pytorch as pl
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import Logger
from lightning.pytorch.strategies import SingleDeviceStrategy
from torch.utils.data import DataLoader, DistributedSampler, TensorDataset

import constrained_eq as ceq
from constrained_eq.core.formulations import FORMULATIONS
from constrained_eq.core.solver.split_feasibility import measure
from constrained_eq.integrations.lightning import CHECKPOINT_KEY, SolverModule
from constrained_eq.training.monitoring import constraint_columns
from constrained_eq.training.validation import objective_evaluator

EPOCHS = 3


class MemoryLogger(Logger):
    """Every ``log_metrics`` call, in order: ``(step, metrics)``."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[tuple[int, dict[str, float]]] = []

    @property
    def name(self) -> str:
        return "memory"

    @property
    def version(self) -> int:
        return 0

    def log_metrics(self, metrics, step=None) -> None:
        self.rows.append((step, dict(metrics)))

    def log_hyperparams(self, params, *args, **kwargs) -> None:
        pass

    def steps(self) -> list[tuple[int, dict[str, float]]]:
        return [(s, m) for s, m in self.rows if "lagrangian" in m]

    def evaluations(self) -> list[dict[str, float]]:
        return [m for _, m in self.rows if "val_loss" in m]


def train_loader() -> DataLoader:
    """Shuffled by epoch (``set_epoch``), so the order does not hang on how often an iterator is started."""
    data = toy.dataset()
    return DataLoader(data, batch_size=16, sampler=DistributedSampler(data, num_replicas=1, rank=0, seed=0))


def val_loader() -> DataLoader:
    return DataLoader(toy.dataset(24), batch_size=10)


def trainer(epochs: int = EPOCHS, **kwargs) -> pl.Trainer:
    options = {"accelerator": "cpu", "devices": 1, "logger": False, "enable_checkpointing": False,
               "enable_progress_bar": False, "enable_model_summary": False, "max_epochs": epochs, **kwargs}
    return pl.Trainer(**options)


def module(formulation: str = "resilient") -> SolverModule:
    return SolverModule(toy.model(), toy.problem(), formulation, toy.adam, example_batch=toy.example_batch(),
                        **toy.SOLVER, **toy.FORMULATIONS[formulation])


def plain_run(formulation: str, epochs: int = EPOCHS):
    """The plain loop: records of every step, and after each epoch the validation loss and measurement."""
    model = toy.model()
    solver = ceq.Solver(toy.problem(), model, formulation, toy.adam, example_batch=toy.example_batch(),
                        **toy.SOLVER, **toy.FORMULATIONS[formulation])
    loader, records, evaluations = train_loader(), [], []
    for epoch in range(epochs):
        solver.set_epoch(epoch)
        loader.sampler.set_epoch(epoch)
        records += [solver.step(batch) for batch in loader]
        loss = objective_evaluator(solver)(model, val_loader())["loss"]
        evaluations.append((loss, measure(solver, model, val_loader())))
    return model, solver, records, evaluations


def test_the_formulations_here_are_the_registered_ones():
    assert set(toy.FORMULATIONS) == set(FORMULATIONS)


@pytest.mark.parametrize("formulation", list(toy.FORMULATIONS))
def test_fit_takes_the_plain_loops_steps_bitwise(formulation):
    model, solver, records, _ = plain_run(formulation)
    lit = module(formulation)
    fit = trainer()
    fit.fit(lit, train_loader(), val_loader())
    expected, got = toy.state(model, solver), toy.state(lit.model, lit.solver)
    assert all(torch.equal(expected[k], got[k]) for k in expected), formulation
    assert lit.solver.step_count == solver.step_count == len(records) == fit.global_step == 4 * EPOCHS
    assert not torch.equal(got["theta"], toy.state(toy.model(), solver)["theta"])  # it trained


def test_bf16_mixed_precision_takes_the_plain_loops_steps_under_autocast():
    x, y, index = toy.dataset().tensors
    data = TensorDataset(x.float(), y.float(), index)  # CPU autocast acts on float32

    def loader():
        return DataLoader(data, batch_size=16, sampler=DistributedSampler(data, num_replicas=1, rank=0, seed=0))

    model = toy.model().float()
    solver = ceq.Solver(toy.problem(), model, "resilient", toy.adam, example_batch=data[:2], **toy.SOLVER,
                        **toy.FORMULATIONS["resilient"])
    plain = loader()
    for epoch in range(2):
        solver.set_epoch(epoch)
        plain.sampler.set_epoch(epoch)
        for batch in plain:
            with torch.autocast("cpu", dtype=torch.bfloat16):
                solver.step(batch)
    lit = SolverModule(toy.model().float(), toy.problem(), "resilient", toy.adam, example_batch=data[:2],
                       **toy.SOLVER, **toy.FORMULATIONS["resilient"])
    trainer(epochs=2, precision="bf16-mixed").fit(lit, loader())
    expected, got = toy.state(model, solver), toy.state(lit.model, lit.solver)
    assert all(torch.equal(expected[k], got[k]) for k in expected)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert lit.model(x[:2].float()).dtype == torch.bfloat16  # autocast did act


def _expected_columns(record) -> dict[str, float]:
    """history.csv's column names (training.monitoring), each read from the record itself in float64."""
    groups = {"value": record.values, "lambda": record.multipliers, "slack": record.slacks}
    out = {"loss": record.loss.item(), "lagrangian": record.lagrangian.item()}
    for name in constraint_columns(record):
        key, what, index = name.rsplit(".", 2)
        out[name] = groups[what][key].reshape(-1)[int(index)].item()
    return out


def test_loggers_get_every_steps_columns_and_each_evaluation():
    _, _, records, evaluations = plain_run("resilient", epochs=2)
    logger = MemoryLogger()
    trainer(epochs=2, logger=logger, log_every_n_steps=1).fit(module(), train_loader(), val_loader())
    steps = logger.steps()
    assert [s for s, _ in steps] == list(range(len(records)))
    for (_, logged), record in zip(steps, records, strict=True):
        expected = _expected_columns(record)
        assert {k: v for k, v in logged.items() if k != "epoch"} == expected
    assert any(".lambda." in k for k in expected) and any(".slack." in k for k in expected)
    assert len(logger.evaluations()) == len(evaluations) == 2
    for logged, (loss, measured) in zip(logger.evaluations(), evaluations, strict=True):
        expected = {"val_loss": float(torch.tensor(loss, dtype=torch.float32)), "val_feasible": float(measured.feasible),
                    **measured.columns("val")}
        assert {k: v for k, v in logged.items() if k != "epoch"} == expected
        assert "val/inequality_mean_output/violation[1]" in logged


def test_log_constraints_false_logs_the_loss_and_the_lagrangian_only():
    logger = MemoryLogger()
    lit = SolverModule(toy.model(), toy.problem(), "lagrangian", toy.adam, example_batch=toy.example_batch(),
                       log_constraints=False, **toy.SOLVER)
    trainer(epochs=1, logger=logger, log_every_n_steps=1).fit(lit, train_loader())
    assert [sorted(m) for _, m in logger.steps()] == [["epoch", "lagrangian", "loss"]] * 4


def test_resuming_from_a_checkpoint_continues_the_uninterrupted_run(tmp_path):
    uninterrupted, logger = module(), MemoryLogger()
    checkpoints = ModelCheckpoint(dirpath=tmp_path, filename="{epoch}", save_top_k=-1, every_n_epochs=1)
    trainer(logger=logger, log_every_n_steps=1, enable_checkpointing=True,
            callbacks=[checkpoints]).fit(uninterrupted, train_loader(), val_loader())
    saved = torch.load(tmp_path / "epoch=0.ckpt", weights_only=False)
    state = saved[CHECKPOINT_KEY]
    assert state["step"] == 4 and "model" not in state and {"cmp", "slacks", "optimizer", "feasibility"} <= set(state)
    carried = torch.cat([m["weight"] for m in state["cmp"]["multipliers"].values()])
    assert carried.abs().sum() > 0  # λ of epoch 0 is carried

    resumed, resumed_logger = module(), MemoryLogger()
    fit = trainer(logger=resumed_logger, log_every_n_steps=1)
    fit.fit(resumed, train_loader(), val_loader(), ckpt_path=tmp_path / "epoch=0.ckpt")
    expected, got = toy.state(uninterrupted.model, uninterrupted.solver), toy.state(resumed.model, resumed.solver)
    assert all(torch.equal(expected[k], got[k]) for k in expected)
    assert resumed.solver.step_count == uninterrupted.solver.step_count == fit.global_step == 4 * EPOCHS
    assert resumed_logger.steps() == logger.steps()[4:]  # the same history from the checkpoint on
    assert resumed_logger.evaluations() == logger.evaluations()[1:]
    verdicts = [{k: (v.verdict, v.evidence) for k, v in run.solver.feasibility().items()}
                for run in (uninterrupted, resumed)]
    assert verdicts[0] == verdicts[1] and verdicts[0]  # the feasibility monitor went on from the checkpoint


def test_a_checkpoint_without_the_solvers_state_is_refused():
    with pytest.raises(ValueError, match=f"SolverModule: the checkpoint holds no '{CHECKPOINT_KEY}' entry"):
        module().on_load_checkpoint({"state_dict": {}})


def test_a_problem_must_be_a_constrained_problem():
    with pytest.raises(TypeError, match="SolverModule: expected 'problem' to be a ConstrainedProblem \\(got dict\\)"):
        SolverModule(toy.model(), {}, "lagrangian")


@pytest.mark.parametrize(("strategy", "precision", "message"), [
    (object(), "32-true", "expected the Trainer's strategy to be single-device or DDP \\(strategy='ddp'\\) "
                          "\\(got object\\)"),
    (SingleDeviceStrategy("cpu"), "16-mixed", "the fp16 gradient scaler of precision='16-mixed' does not scale"),
])
def test_strategies_and_precisions_the_solver_cannot_run_under_are_refused(strategy, precision, message):
    lit = module()
    lit.trainer = SimpleNamespace(strategy=strategy, precision=precision)
    with pytest.raises(ValueError, match=message):
        lit.on_fit_start()
