"""Non-finite runs stop with a clear error and never replace the last finite checkpoint."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch

import constrained_eq as ceq
from constrained_eq.tasks.toy_rotation import ToyRotation
from constrained_eq.training.loop import fit
from constrained_eq.training.settings import Limits


def _solver(**options: Any) -> tuple[Any, ceq.Solver]:
    torch.manual_seed(0)
    task = ToyRotation(n_train=32, n_val=16, n_test=16)
    loaders = task.loaders(seed=0, batch_size=8)
    model = task.model("vector_net", hidden=4, n_layers=2)
    problem = ceq.ConstrainedProblem(ceq.Objective(task.loss, task.forward), [ceq.Equality(ceq.gammas)])
    return loaders, ceq.Solver(problem, model, "lagrangian", torch.optim.Adam(model.parameters(), 1e-2), 0.05,
                               **options)


class _NaNFrom:
    """Every batch from global batch ``start`` on has a NaN input."""

    def __init__(self, loader: Any, start: int) -> None:
        self.loader, self.start, self.seen = loader, start, 0
        self.generator = loader.generator

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self):
        for x, y in self.loader:
            if self.seen >= self.start:
                x = x.clone()
                x[0, 0, 0] = float("nan")
            self.seen += 1
            yield x, y


def test_consecutive_skips_stop_the_run(tmp_path):
    loaders, solver = _solver(on_nonfinite="skip")
    with pytest.raises(ceq.NonFiniteError, match="3 consecutive batches were non-finite and skipped"):
        fit(solver, _NaNFrom(loaders.train, 4), loaders.val, epochs=5, run_dir=tmp_path, progress=False,
            limits=Limits(max_consecutive_skips=3))  # 4 batches per epoch: epoch 0 is clean
    assert torch.load(tmp_path / "checkpoint.pt", weights_only=True)["epoch"] == 0


def test_an_epoch_of_skipped_batches_is_not_checkpointed(tmp_path):
    loaders, solver = _solver(on_nonfinite="skip")
    with pytest.raises(ceq.NonFiniteError, match=r"epoch 1 ended with non-finite train_loss.*\(end of epoch 0\) "
                                                 "is intact") as info:
        fit(solver, _NaNFrom(loaders.train, 4), loaders.val, epochs=3, run_dir=tmp_path, progress=False)  # the default limit (100) is not reached: the epoch's NaN mean stops it
    assert "on_nonfinite: skip" not in str(info.value)
    checkpoint = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert checkpoint["epoch"] == 0
    assert all(math.isfinite(float(v.abs().max())) for v in checkpoint["solver"]["model"].values())


def test_max_consecutive_skips_is_checked():
    loaders, solver = _solver()
    with pytest.raises(ValueError, match="'limits.max_consecutive_skips' to be an integer ≥ 1"):
        fit(solver, loaders.train, epochs=1, progress=False, limits=Limits(max_consecutive_skips=0))


def test_a_nan_variable_lr_is_refused_by_the_solver():
    task = ToyRotation(n_train=8, n_val=8, n_test=8)
    model = task.model("vector_net", hidden=4, n_layers=2)
    problem = ceq.ConstrainedProblem(ceq.Objective(task.loss, task.forward), [ceq.Equality(ceq.gammas)])
    for bad in (float("nan"), float("inf")):
        with pytest.raises(ValueError, match="'variable_lr' to be a finite number > 0"):
            ceq.Solver(problem, model, "lagrangian", torch.optim.Adam(model.parameters(), 1e-2), 0.05,
                       variable_lr=bad)
