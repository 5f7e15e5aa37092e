"""TensorBoard logs of a run: ``logging: {tensorboard: true}`` in a problem file.

The run folder's CSV files stay the record; TensorBoard gets the same numbers, through
``torch.utils.tensorboard``, in ``<run folder>/tensorboard/``, one point per epoch:

===============================  ==============================================================
tag                              value
===============================  ==============================================================
``loss/train``                   mean training loss of the epoch
``val/<name>``                   every validation column (``val/loss``, ``val/equivariance_error``, …)
``gamma/<i>``                    γ_i of each relaxed layer at the end of the epoch
``constraints/<key>/value/<i>``  the target values of each constraint (last step of the epoch)
``constraints/<key>/lambda/<i>`` its multipliers λ
``constraints/<key>/u/<i>``      its slacks u (resilient constraints)
===============================  ==============================================================

At the end, ``tensorboard/hparams`` holds the hyperparameters (the flattened problem) with the final
metrics (best validation metrics and the test metrics), for TensorBoard's HParams tab. Open with
``tensorboard --logdir runs/``.

TensorBoard is an optional extra: ``pip install 'constrained_eq[tensorboard]'``.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from constrained_eq._utils.atomic_io import refuse_link
from constrained_eq.run.problem_model import Problem
from constrained_eq.training.callbacks import Callback

__all__ = ["require_tensorboard", "TensorBoardLog", "flat_hparams", "TB_FOLDER"]

TB_FOLDER = "tensorboard"
_WHAT = {"value": "value", "lambda": "lambda", "slack": "u"}


def require_tensorboard() -> Any:
    """Import ``torch.utils.tensorboard.SummaryWriter``.

    Raises:
        ImportError: Naming the extra to install when the ``tensorboard`` package is missing.
    """
    try:
        importlib.import_module("tensorboard")
        return importlib.import_module("torch.utils.tensorboard").SummaryWriter
    except ImportError as err:
        raise ImportError("logging.tensorboard needs the 'tensorboard' package: pip install "
                          f"'constrained_eq[tensorboard]' (or pip install tensorboard) ({err})") from None


def tag_of(column: str) -> str | None:
    """The TensorBoard tag of a history column (``None`` for ``epoch``).

    Examples:
        >>> tag_of("equality_gammas.lambda.2"), tag_of("val_equivariance_error"), tag_of("train_loss")
        ('constraints/equality_gammas/lambda/2', 'val/equivariance_error', 'loss/train')
    """
    if column == "epoch":
        return None
    if column == "train_loss":
        return "loss/train"
    if column.startswith("val_"):
        return "val/" + column.removeprefix("val_").replace(".", "/")
    key, _, rest = column.partition(".")
    what, _, index = rest.partition(".")
    if what in _WHAT and index:
        return f"constraints/{key}/{_WHAT[what]}/{index}"
    return column.replace(".", "/")


def flat_hparams(spec: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """The problem as ``{"optimizer.lr": 0.005, "task.name": "toy_rotation", …}`` (lists as text).

    Location keys (``file``, ``lines``, ``constraint_lines``) are left out.
    """
    from constrained_eq.run.problem_file import LOCATION_KEYS

    out: dict[str, Any] = {}
    for key, value in spec.items():
        if not prefix and key in LOCATION_KEYS:
            continue
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flat_hparams(value, f"{name}."))
        elif isinstance(value, bool | int | float | str):
            out[name] = value
        else:
            out[name] = str(value)
    return out


class TensorBoardLog(Callback):
    """Write a run's epochs to ``<run_dir>/tensorboard`` (a callback of ``fit``).

    Args:
        run_dir: The run folder.
        model: The trained model (its γ are logged as ``gamma/<i>`` when it is relaxed).
    """

    def __init__(self, run_dir: str | Path, model: torch.nn.Module) -> None:
        writer = require_tensorboard()
        self.folder = Path(run_dir) / TB_FOLDER
        refuse_link(self.folder)  # event files are never written into a link's target
        self.writer = writer(log_dir=str(self.folder))
        self.model = model

    def on_epoch_end(self, epoch: int, row: Mapping[str, Any]) -> None:
        """Log one history row (and the model's γ) at step ``epoch``."""
        from constrained_eq.homotopy import gammas, homotopic_layers

        for column, value in row.items():
            tag = tag_of(column)
            if tag is not None and isinstance(value, int | float):
                self.writer.add_scalar(tag, float(value), epoch)
        if any(True for _ in homotopic_layers(self.model)):
            for index, gamma in enumerate(gammas(self.model).detach().float().cpu().tolist()):
                self.writer.add_scalar(f"gamma/{index}", gamma, epoch)
        self.writer.flush()

    def close(self, problem: Problem, summary: Mapping[str, Any]) -> None:
        """Write the hyperparameters with the final metrics (HParams tab) and close the writer."""
        metrics = {f"best/{k}": float(v) for k, v in summary.get("best", {}).items() if isinstance(v, int | float)}
        for split in ("test", "test_projected"):
            metrics.update({f"{split}/{k}": float(v) for k, v in summary.get(split, {}).items()
                            if isinstance(v, int | float)})
        self.writer.add_hparams(flat_hparams(problem.to_spec()), metrics, run_name="hparams")
        self.writer.close()
