"""What :func:`~constrained_eq.training.loop.fit` is given, in a few typed groups, and what it returns.

``fit(solver, train, val, epochs=…, evaluation=Evaluation(…), selection=Selection(…),
averaging=Averaging(…), limits=Limits(…), logging=Logging(…))``: each group is a frozen dataclass whose
fields carry their defaults, checked by :func:`check_settings` before the first step.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from constrained_eq._utils.checks import check_int
from constrained_eq.core.solver.engine import Solver
from constrained_eq.core.solver.split_feasibility import DEFAULT_TOLERANCE, counted
from constrained_eq.training.callbacks import Callback
from constrained_eq.training.selection import FEASIBLE
from constrained_eq.training.validation import Evaluator, check_averaging

__all__ = ["Evaluation", "Selection", "Averaging", "Limits", "Logging", "FitSettings", "FitResult",
           "check_settings", "DEPLOY"]

DEPLOY = ("selected", "projected")


@dataclass(frozen=True)
class Evaluation:
    """How and when the model is judged on the validation split.

    Attributes:
        every: Validate every N epochs and at the last (default: 1).
        evaluate: ``evaluate(model, loader) -> dict[str, float]``; its keys get a ``val_`` prefix (default: the
            problem's objective averaged over the loader, ``{"loss": …}``).
        metrics: Extra ``name -> fn(model, loader) -> float`` validation metrics (e.g. an equivariance error),
            logged as ``val_<name>``.
        feasibility_tol: Largest validation violation of a feasible model, in each target's units (1e-3).
    """

    every: int = 1
    evaluate: Evaluator | None = None
    metrics: Mapping[str, Callable[[torch.nn.Module, Any], float]] | None = None
    feasibility_tol: float = DEFAULT_TOLERANCE


@dataclass(frozen=True)
class Selection:
    """Which evaluated model is kept, and which is deployed.

    Attributes:
        column: ``"feasible"`` — the best ``objective`` among evaluations whose validation violations are
            within ``feasibility_tol``, else the least-violating one (:mod:`constrained_eq.training.selection`) —
            or a history column that picks the best epoch alone (default ``None``: ``"feasible"`` when the problem
            has constraints a deployed model must meet, else ``"val_loss"``; ``"train_loss"`` without validation).
        mode: ``"min"`` (losses, errors) or ``"max"`` (accuracies) of the column.
        objective: The column ``"feasible"`` ranks feasible evaluations by.
        deploy: ``"selected"`` (the selected iterate or averaged model) or ``"projected"`` (its projection
            f_{θ,0} when it is relaxed). The deployed model is certified at the end: every constraint measured
            exactly on it (:mod:`constrained_eq.training.certificate`).
    """

    column: str | None = None
    mode: str = "min"
    objective: str = "val_loss"
    deploy: str = "selected"


@dataclass(frozen=True)
class Averaging:
    """An average of the iterates, judged as its own candidate (columns ``val_avg_*``).

    Attributes:
        kind: ``"none"``, ``"uniform"`` or ``"ema"`` (``torch.optim.swa_utils.AveragedModel``, updated after every
            step; its update reads its counter back to the host, one sync per step on a GPU).
        start: First epoch whose iterates enter the average.
        ema_decay: Decay d of ``kind="ema"``.
    """

    kind: str = "none"
    start: int = 0
    ema_decay: float = 0.99


@dataclass(frozen=True)
class Limits:
    """When a run is stopped as broken.

    Attributes:
        divergence: Largest max|λ| at a logging point before :class:`DivergenceError`; ``None`` turns the check
            off. Target values are never judged: a satisfied constraint may take any value.
        objective: Largest growth factor of the objective over ``max(1, |J₀ at the first logging point|)`` before
            :class:`DivergenceError`; ``None`` turns the check off.
        max_consecutive_skips: With ``Solver(on_nonfinite="skip")``, stop with :class:`NonFiniteError` after
            this many skipped batches in a row.
    """

    divergence: float | None = 1e6
    objective: float | None = 1e6
    max_consecutive_skips: int = 100


@dataclass(frozen=True)
class Logging:
    """What is read back to the host during an epoch (the throttled logging points).

    Attributes:
        every: Refresh the progress bar and check divergence every N steps.
        steps_every: Append a row to ``steps.csv`` every N steps (default ``None``: no ``steps.csv``).
    """

    every: int = 10
    steps_every: int | None = None


@dataclass(frozen=True)
class FitSettings:
    """One call's arguments of :func:`~constrained_eq.training.loop.fit`, as it was given them."""

    epochs: int
    run_dir: str | Path | None = None
    resume: bool = False
    test_loader: Any = None
    checkpoint_every: int = 1
    progress: bool = True
    evaluation: Evaluation = Evaluation()
    selection: Selection = Selection()
    averaging: Averaging = Averaging()
    limits: Limits = Limits()
    logging: Logging = Logging()
    callbacks: Sequence[Callback] = ()


def _groups(s: FitSettings) -> None:
    for name, kind in (("evaluation", Evaluation), ("selection", Selection), ("averaging", Averaging),
                       ("limits", Limits), ("logging", Logging)):
        if not isinstance(getattr(s, name), kind):
            raise TypeError(f"fit: expected '{name}' to be of type {kind.__name__} (got {getattr(s, name)!r})")


def check_settings(s: FitSettings, solver: Solver, has_validation: bool) -> tuple[str, float]:
    """Refuse bad settings (naming the argument); return the selection column and its sign (+1: minimise).

    The column defaults to ``"feasible"`` when a constraint is counted, else ``"val_loss"``; without a
    validation loader it is ``"train_loss"``.
    """
    _groups(s)
    check_int(s.epochs, "epochs", "fit")
    for name, value in (("checkpoint_every", s.checkpoint_every), ("evaluation.every", s.evaluation.every),
                        ("logging.every", s.logging.every),
                        ("limits.max_consecutive_skips", s.limits.max_consecutive_skips)):
        check_int(value, name, "fit")
    check_int(s.logging.steps_every, "logging.steps_every", "fit", allow_none=True)
    if s.selection.mode not in ("min", "max"):
        raise ValueError(f"fit: expected 'selection.mode' to be 'min' or 'max' (got {s.selection.mode!r})")
    check_averaging(s.averaging.kind, s.averaging.start, s.averaging.ema_decay)
    if s.selection.deploy not in DEPLOY:
        raise ValueError(f"fit: expected 'selection.deploy' to be one of {', '.join(map(repr, DEPLOY))} "
                         f"(got {s.selection.deploy!r})")
    tol = s.evaluation.feasibility_tol
    if isinstance(tol, bool) or not isinstance(tol, int | float) or not tol >= 0:
        raise ValueError(f"fit: expected 'evaluation.feasibility_tol' to be a number ≥ 0 (got {tol!r})")
    for name in ("divergence", "objective"):
        value = getattr(s.limits, name)
        if value is not None and not (isinstance(value, int | float) and not isinstance(value, bool) and value > 0):
            raise ValueError(f"fit: expected 'limits.{name}' to be a number > 0 or None (got {value!r})")
    select = s.selection.column
    if select is None:
        select = FEASIBLE if counted(solver.plans) else "val_loss"
    if not has_validation:  # nothing is validated: the train loss is all there is to select by
        select = "train_loss"
    return select, 1.0 if s.selection.mode == "min" else -1.0  # keys rank sign · value, minimised


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
            (:meth:`~constrained_eq.training.certificate.Certificate.as_dict`), with the training-time verdicts.
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
