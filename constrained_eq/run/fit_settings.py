"""What ``fit`` (:mod:`constrained_eq.run.train`) is given and returns: its checked settings, :class:`FitResult`."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from constrained_eq.core.checks import check_int
from constrained_eq.core.engine import Solver
from constrained_eq.core.split_feasibility import DEFAULT_TOLERANCE, counted
from constrained_eq.run.selection import FEASIBLE
from constrained_eq.run.validation import Evaluator, check_averaging

__all__ = ["FitResult", "FitSettings", "check_settings", "fit_settings", "DEPLOY"]

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


def fit_settings(
    *,
    epochs: int,
    run_dir: str | Path | None = None,
    evaluate: Evaluator | None = None,
    metrics: Mapping[str, Callable[[torch.nn.Module, Any], float]] | None = None,
    checkpoint_every: int = 1,
    eval_every: int = 1,
    log_every: int = 10,
    steps_every: int | None = None,
    resume: bool = False,
    progress: bool = True,
    select: str | None = None,
    select_mode: str = "min",
    objective: str = "val_loss",
    feasibility_tol: float = DEFAULT_TOLERANCE,
    averaging: str = "none",
    average_start: int = 0,
    ema_decay: float = 0.99,
    test_loader: Any = None,
    plot: bool = True,
    divergence_limit: float | None = 1e6,
    objective_limit: float | None = 1e6,
    on_epoch: Callable[[int, dict[str, Any]], None] | None = None,
    max_consecutive_skips: int = 100,
    deploy: str = "selected",
) -> FitSettings:
    """Train ``solver`` for ``epochs`` epochs, validate, keep the best model, checkpoint and resume.

    At every evaluation each constraint is measured over the whole validation split
    (:func:`constrained_eq.core.split_feasibility.measure`): history columns ``val/<constraint>/value[i]`` and
    ``val/<constraint>/violation[i]``, and a feasibility verdict under ``feasibility_tol``.

    Args:
        solver (Solver): The solver (model, problem, formulation, optimizers).
        train_loader (iterable): Training batches. For exact resume give it a seeded
            ``torch.Generator`` (``DataLoader(..., shuffle=True, generator=g)``); its state is checkpointed.
        val_loader (iterable, optional): Validation batches (default: none; selection then uses
            ``train_loss``).
        epochs (int): Total number of epochs (including those done before a resume).
        run_dir (str or Path, optional): Run folder for history, checkpoints, ``best.pt``, metrics and plots
            (default: none, nothing is written and ``resume`` is unavailable).
        evaluate (callable, optional): ``evaluate(model, loader) -> dict[str, float]`` (default: the
            problem's objective averaged over the loader, ``{"loss": …}``); keys get a ``val_`` prefix.
        metrics (mapping, optional): Extra ``name -> fn(model, loader) -> float`` validation metrics
            (e.g. an equivariance error); logged as ``val_<name>``.
        checkpoint_every (int, optional): Write ``checkpoint.pt`` every N epochs and at the end (default: 1).
        eval_every (int, optional): Validate every N epochs and at the end (default: 1).
        log_every (int, optional): Refresh the progress bar every N steps (default: 10).
        steps_every (int, optional): Append to ``steps.csv`` every N steps (default: none).
        resume (bool, optional): Continue from ``run_dir/checkpoint.pt`` (default: :obj:`False`).
        progress (bool, optional): Show a tqdm progress bar (default: :obj:`True`).
        select (str, optional): ``"feasible"`` — the best ``objective`` among evaluations whose validation
            violations are within ``feasibility_tol``, else the least-violating one
            (:mod:`constrained_eq.run.selection`) — or a history column that picks the best epoch alone
            (default: ``"feasible"`` when the problem has constraints a deployed model must meet, else
            ``"val_loss"``).
        select_mode (str, optional): ``"min"`` (losses, errors) or ``"max"`` (accuracies) of the selection
            column (default: ``"min"``).
        objective (str, optional): The column ``select="feasible"`` ranks feasible evaluations by
            (default: ``"val_loss"``).
        feasibility_tol (float, optional): Largest validation violation of a feasible model, in each
            target's units (default: ``1e-3``).
        averaging (str, optional): ``"none"``, ``"uniform"`` or ``"ema"``: also keep an average of the
            iterates from epoch ``average_start`` (``torch.optim.swa_utils.AveragedModel``, updated after
            every step; its update reads its counter back to the host, one sync per step on a GPU),
            evaluated as its own candidate (columns ``val_avg_*``) (default: ``"none"``).
        average_start (int, optional): First epoch whose iterates enter the average (default: 0).
        ema_decay (float, optional): Decay d of ``averaging="ema"`` (default: 0.99).
        test_loader (iterable, optional): Evaluate the selected model on it at the end (``test`` and
            ``feasibility.test`` in ``metrics.json``; default: none).
        plot (bool, optional): Write ``plots/*.png`` at the end (default: :obj:`True`).
        divergence_limit (float, optional): Largest max|λ| allowed at a logging point before
            :class:`DivergenceError`; ``None`` turns the check off. Target values are never judged: a
            satisfied constraint may take any value (default: ``1e6``).
        objective_limit (float, optional): Largest growth factor of the objective over
            ``max(1, |J₀ at the first logging point|)`` before :class:`DivergenceError` (a blow-up); ``None``
            turns the check off (default: ``1e6``).
        on_epoch (callable, optional): ``on_epoch(epoch, row)`` after each epoch on every rank, with the
            epoch's ``history.csv`` row, before it is written (it may add ``"<a>.<b>"`` columns, e.g. a
            learning rate); e.g. a TensorBoard writer or an LR schedule (default: none).
        max_consecutive_skips (int, optional): With ``on_nonfinite="skip"``, stop with :class:`NonFiniteError`
            after this many skipped batches in a row (default: 100).
        deploy (str, optional): The model that is deployed: ``"selected"`` (the selected iterate or averaged
            model) or ``"projected"`` (its projection f_{θ,0} when it is relaxed; homotopy constraints are then
            discharged by projection). At the end it is certified: every constraint measured exactly on it,
            data targets over the whole test split (else validation), in ``FitResult.certificate`` and
            ``metrics.json`` ``certificate`` (:mod:`constrained_eq.run.certificate`) (default: ``"selected"``).

    A run folder is locked (:class:`~constrained_eq.run.runs.RunLock`) while ``fit`` writes it: a second
    writer is refused naming the holder's pid.

    Returns:
        FitResult: best epoch and metrics, final metrics, run folder.

    Raises:
        NonFiniteError: A loss, violation or gradient was NaN/Inf (solver with ``on_nonfinite="raise"``);
            the message names the step, the epoch and the last checkpoint, which is intact.
        DivergenceError: max|λ| or the objective passed ``divergence_limit``; names the learning rates to lower.
        RunFolderError: Another process writes ``run_dir``; or no checkpoint of the folder can be resumed
            (the latest damaged and the previous one too: both named).
        ValueError: On bad arguments, a missing checkpoint with ``resume=True``, a run folder that already
            holds a checkpoint with ``resume=False``, or a ``select`` column that is never logged.
    """
    settings = FitSettings(
        epochs=epochs, run_dir=run_dir, evaluate=evaluate, metrics=metrics, checkpoint_every=checkpoint_every,
        eval_every=eval_every, log_every=log_every, steps_every=steps_every, resume=resume, progress=progress,
        select=select, select_mode=select_mode, objective=objective, feasibility_tol=feasibility_tol,
        averaging=averaging, average_start=average_start, ema_decay=ema_decay, test_loader=test_loader, plot=plot,
        divergence_limit=divergence_limit, objective_limit=objective_limit, on_epoch=on_epoch,
        max_consecutive_skips=max_consecutive_skips, deploy=deploy)
    return settings
