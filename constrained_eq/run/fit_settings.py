"""What ``fit`` (:mod:`constrained_eq.run.train`) is given and returns: its checked settings, :class:`FitResult`."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from constrained_eq.core.checks import check_int
from constrained_eq.core.engine import Solver
from constrained_eq.core.split_feasibility import counted
from constrained_eq.run.selection import FEASIBLE
from constrained_eq.run.validation import Evaluator, check_averaging

__all__ = ["FitResult", "FitSettings", "check_settings", "DEPLOY"]

DEPLOY = ("selected", "projected")


@dataclass
class FitSettings:
    """The keyword arguments of :func:`~constrained_eq.run.train.fit` (documented there)."""

    epochs: int
    run_dir: str | Path | None
    evaluate: Evaluator | None
    metrics: Mapping[str, Callable[[torch.nn.Module, Any], float]] | None
    checkpoint_every: int
    eval_every: int
    log_every: int
    steps_every: int | None
    resume: bool
    progress: bool
    select: str | None
    select_mode: str
    objective: str
    feasibility_tol: float
    averaging: str
    average_start: int
    ema_decay: float
    test_loader: Any
    plot: bool
    divergence_limit: float | None
    objective_limit: float | None
    on_epoch: Callable[[int, dict[str, Any]], None] | None
    max_consecutive_skips: int
    deploy: str = "selected"


def _check_positive_int(value: Any, name: str, allow_none: bool = False) -> None:
    check_int(value, name, "fit", allow_none=allow_none)


def check_settings(s: FitSettings, solver: Solver, has_validation: bool) -> tuple[str, float]:
    """Refuse bad settings (naming the argument); return the selection column and its sign (+1: minimise).

    ``select`` defaults to ``"feasible"`` when a constraint is counted, else ``"val_loss"``; without a
    validation loader it is ``"train_loss"``.
    """
    _check_positive_int(s.epochs, "epochs")
    for name in ("checkpoint_every", "eval_every", "log_every"):
        _check_positive_int(getattr(s, name), name)
    _check_positive_int(s.steps_every, "steps_every", allow_none=True)
    _check_positive_int(s.max_consecutive_skips, "max_consecutive_skips")
    if s.select_mode not in ("min", "max"):
        raise ValueError(f"fit: expected 'select_mode' to be 'min' or 'max' (got {s.select_mode!r})")
    check_averaging(s.averaging, s.average_start, s.ema_decay)
    if s.deploy not in DEPLOY:
        raise ValueError(f"fit: expected 'deploy' to be one of {', '.join(map(repr, DEPLOY))} (got {s.deploy!r})")
    tol = s.feasibility_tol
    if isinstance(tol, bool) or not isinstance(tol, int | float) or not tol >= 0:
        raise ValueError(f"fit: expected 'feasibility_tol' to be a number ≥ 0 (got {tol!r})")
    select = s.select
    if select is None:
        select = FEASIBLE if counted(solver.plans) else "val_loss"
    if not has_validation:  # nothing is validated: the train loss is all there is to select by
        select = "train_loss"
    for name in ("divergence_limit", "objective_limit"):
        value = getattr(s, name)
        if value is not None and not (isinstance(value, int | float) and not isinstance(value, bool) and value > 0):
            raise ValueError(f"fit: expected '{name}' to be a number > 0 or None (got {value!r})")
    return select, 1.0 if s.select_mode == "min" else -1.0  # keys rank sign · value, minimised


@dataclass
class FitResult:
    """What :func:`fit` returns.

    Attributes:
        best_epoch: The selected epoch (0-based), or ``None`` if no epoch was evaluated.
        best_metrics: The history row's metrics at the best epoch.
        final_metrics: The metrics of the last epoch.
        run_dir: The run folder, or ``None`` when nothing was written.
        epochs: Number of epochs completed.
        candidate: ``"iterate"`` or ``"averaged"``: which model was selected.
        selection: The selection, said in one sentence.
        feasibility: The selected model's validation verdict (:meth:`Measurement.verdict`), if measured.
        test: The selected model's test metrics (with ``test_loader``).
        test_feasibility: Its test verdict (with ``test_loader``).
        averaged: The averaged model at the end of training (with ``averaging``), else ``None``.
        certificate: Every constraint measured exactly on the deployed model
            (:meth:`~constrained_eq.run.certificate.Certificate.as_dict`), with the training-time verdicts.
        deployed_feasible: Whether the deployed model meets every hard constraint (``None`` before any epoch).
        violated: The hard constraints the deployed model violates.
        likely_infeasible: The constraints training judged likely infeasible.
    """

    best_epoch: int | None
    best_metrics: dict[str, float] = field(default_factory=dict)
    final_metrics: dict[str, float] = field(default_factory=dict)
    run_dir: Path | None = None
    epochs: int = 0
    candidate: str = "iterate"
    selection: str = ""
    feasibility: dict[str, Any] | None = None
    test: dict[str, float] = field(default_factory=dict)
    test_feasibility: dict[str, Any] | None = None
    averaged: torch.nn.Module | None = None
    certificate: dict[str, Any] | None = None
    deployed_feasible: bool | None = None
    violated: list[str] = field(default_factory=list)
    likely_infeasible: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """No hard constraint violated by the deployed model, none judged likely infeasible (``ceq run``: exit 0)."""
        return not self.violated and not self.likely_infeasible
