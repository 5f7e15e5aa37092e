"""The training loop: ``fit(solver, train_loader, val_loader)`` with history, checkpoints and resume.

Each epoch calls ``solver.set_epoch(e)`` (the CR schedule), one ``solver.step(batch)`` per batch and,
every ``eval_every`` epochs, a validation pass. What is measured goes to the run folder as it is
produced (see :mod:`constrained_eq.run.runs`), never into a growing in-memory list. Only throttled
logging reads values back to the host: the progress bar every ``log_every`` steps, ``steps.csv``
every ``steps_every`` steps and one read per epoch for ``history.csv``.

Resume is exact: the checkpoint at the end of epoch ``e`` holds the solver's state (model, γ, λ, u,
optimizers, counters, global RNG) and the state of the train loader's ``torch.Generator``, so the
shuffle order of every later epoch is the one an uninterrupted run would have drawn.

Under ``torch.distributed`` (see :mod:`constrained_eq.core.distributed`) every rank runs ``fit``: the train
loader's sampler is told the epoch (``DistributedSampler.set_epoch``), the epoch's train loss is averaged
over ranks, and only rank 0 validates, shows progress and writes the run folder; every rank reads the
checkpoint on resume.

Faults stop a run without losing anything: a non-finite loss, violation or gradient raises
:class:`NonFiniteError` naming the step, the epoch and the last checkpoint (left as it was), unless
the solver skips such batches (``on_nonfinite="skip"``; their number is ``skipped_steps`` in
``metrics.json``). At the throttled logging points (every ``log_every`` steps, no extra host sync
elsewhere) divergence is judged by the multipliers and the objective, never by a target's magnitude: a
max|λ| beyond ``divergence_limit`` or an objective beyond ``objective_limit`` times its first logged value
(or either non-finite) makes fit raise :class:`DivergenceError` naming the learning rates to lower; a
growth of max|λ| by ``1e3×`` over the run only warns.

At every evaluation each constraint is measured over the whole validation split
(:mod:`constrained_eq.core.split_feasibility`); ``select="feasible"`` keeps the best feasible evaluation
(:mod:`constrained_eq.run.selection`); ``averaging`` adds the average of the iterates as a candidate.
"""

from __future__ import annotations

import copy
import inspect
import math
import time
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from cooper.utils import ConstraintType
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from tqdm.auto import tqdm

from constrained_eq.core._loaders import batch_size as _batch_size
from constrained_eq.core._loaders import to_device
from constrained_eq.core.distributed import all_reduce_mean, is_distributed, is_main_process, unwrap
from constrained_eq.core.engine import NonFiniteError, Solver, StepRecord
from constrained_eq.core.feasibility import warn_new_infeasible
from constrained_eq.core.split_feasibility import DEFAULT_TOLERANCE, Measurement, counted, is_homotopy, measure
from constrained_eq.core.structure import describe
from constrained_eq.run.runs import (
    CsvStream,
    RunFolderError,
    atomic_torch_save,
    load_checkpoint,
    locked,
    read_json,
    restore_checkpoint,
    save_checkpoint,
    write_json,
)
from constrained_eq.run.selection import FEASIBLE, describe_selection, selection_key

__all__ = ["fit", "FitResult", "to_device", "objective_evaluator", "DivergenceError"]

DIVERGENCE_GROWTH = 1e3  # warn when max|λ| grows this much over the run


class DivergenceError(FloatingPointError):
    """The multipliers λ grew without bound or the objective blew up; the last checkpoint is intact."""

Evaluator = Callable[[torch.nn.Module, Any], Mapping[str, float]]


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


def objective_evaluator(solver: Solver, device: torch.device | None = None) -> Evaluator:
    """The default validation: the problem's objective averaged over the loader, as ``{"loss": …}``."""
    objective = solver.problem.objective

    def evaluate(model: torch.nn.Module, loader: Any) -> dict[str, float]:
        total, count = None, 0
        for batch in loader:
            batch = to_device(batch, device) if device is not None else batch
            n = _batch_size(batch)
            value = objective(objective.forward(model, batch), batch).detach() * n
            total = value if total is None else total + value
            count += n
        return {"loss": float(total) / max(count, 1) if total is not None else float("nan")}

    return evaluate


def _device(solver: Solver) -> torch.device:
    return next((p.device for p in solver.model.parameters()), torch.device("cpu"))


def _constraint_columns(record: StepRecord | None) -> dict[str, float]:
    """Per-element γ (values), λ and u of every constraint as ``<key>.<what>.<i>`` columns (one sync)."""
    if record is None:
        return {}
    names, tensors = [], []
    for what, group in (("value", record.values), ("lambda", record.multipliers), ("slack", record.slacks)):
        for key, tensor in group.items():
            flat = tensor.detach().reshape(-1).float()
            names += [f"{key}.{what}.{i}" for i in range(flat.numel())]
            tensors.append(flat)
    if not tensors:
        return {}
    return dict(zip(names, torch.cat([t.to(tensors[0].device) for t in tensors]).tolist(), strict=True))


def _magnitudes(solver: Solver, record: StepRecord) -> tuple[float, dict[str, float], dict[str, float]]:
    """Loss, the batch's largest violation (max|γ| for a homotopy constraint) and max|λ| per constraint (one sync).

    The violation is read as :func:`~constrained_eq.core.split_feasibility.element_violations` reads it:
    ``|h|`` for an equality, ``[g − b]₊`` for an inequality.
    """
    zero = record.loss.new_zeros(())
    plans = {p.key: p for p in solver.plans}
    shown = {}
    for key, values in record.values.items():
        plan = plans.get(key)
        if plan is None or not values.numel() or plan.constraint.is_penalty:
            continue
        if is_homotopy(plan):
            shown[key] = values.detach().abs().max().float()
        elif key in record.violations:
            raw = record.violations[key].detach()
            equality = plan.constraint_type == ConstraintType.EQUALITY
            shown[key] = (raw.abs() if equality else raw.clamp(min=0)).max().float()
    lambdas = {k: m.abs().max().float() for k, m in record.multipliers.items() if m.numel()}
    values = torch.stack([record.loss.float().to(zero.device), *(t.to(zero.device) for t in shown.values()),
                          *(t.to(zero.device) for t in lambdas.values())]).tolist()
    return (values[0], dict(zip(shown, values[1:1 + len(shown)], strict=True)),
            dict(zip(lambdas, values[1 + len(shown):], strict=True)))


def _postfix(solver: Solver, loss: float, shown: Mapping[str, float], lambdas: Mapping[str, float]) -> dict[str, str]:
    """Progress-bar fields named by constraint: ``<name>: |γ|=…`` (homotopy) or ``viol=…``, then ``λ=…``."""
    homotopy = {p.key for p in solver.plans if is_homotopy(p)}
    out = {"loss": f"{loss:.4g}"}
    for key in dict.fromkeys([*shown, *lambdas]):
        parts = []
        if key in shown:
            parts.append(f"{'max|γ|' if key in homotopy else 'viol'}={shown[key]:.3g}")
        if key in lambdas:
            parts.append(f"λ={lambdas[key]:.3g}")
        out[key] = " ".join(parts)
    return out


def _learning_rates(solver: Solver) -> str:
    lrs = [group["lr"] for opt in getattr(solver.optimizer, "primal_optimizers", []) for group in opt.param_groups]
    return f"dual_lr={solver.dual_lr:g}, variable_lr/primal lr={[float(f'{lr:g}') for lr in lrs]}"


def _check_divergence(solver: Solver, loss: float, lambdas: Mapping[str, float], state: dict,
                      limit: float | None, step: int, epoch: int, checkpoint: Callable[[], str],
                      objective_limit: float | None = None) -> None:
    """Judge divergence by the multipliers and the objective, never by a target's magnitude.

    Raises :class:`DivergenceError` when a max|λ| is non-finite or above ``limit`` (λ grew without bound),
    or the objective is non-finite or above ``objective_limit · max(1, |J₀ at the first logging point|)``
    (blow-up);
    warns once when max|λ| grows ``DIVERGENCE_GROWTH``× over the run. A constraint value of any size
    with λ = 0 is a satisfied constraint, not a divergence.
    """
    if limit is None and objective_limit is None:
        return
    advice = (f"lower the learning rates ({_learning_rates(solver)}): 'dual_lr' first, then 'variable_lr'. "
              f"{checkpoint()}")
    for key, value in lambdas.items():
        if limit is not None and (not math.isfinite(value) or value > limit):
            raise DivergenceError(f"step {step} (epoch {epoch}): the multipliers diverged: max|λ| of constraint "
                                  f"{key!r} is {value:.3g} (limit {limit:g}); {advice}")
    if state.get("objective_baseline") is None and math.isfinite(loss):
        state["objective_baseline"] = abs(loss)
    scale = max(1.0, state.get("objective_baseline") or 0.0)
    if objective_limit is not None and (not math.isfinite(loss) or abs(loss) > objective_limit * scale):
        raise DivergenceError(f"step {step} (epoch {epoch}): the objective blew up: {loss:.3g} (limit "
                              f"{objective_limit:g} × "
                              f"max(1, first logged |J₀| = {state.get('objective_baseline') or 0.0:.3g})); {advice}")
    current = max(lambdas.values(), default=0.0)
    if state.get("dual_baseline") is None:
        state["dual_baseline"] = current
        return
    if not state.get("dual_growth_warned") and current > DIVERGENCE_GROWTH * max(state["dual_baseline"], 1.0):
        state["dual_growth_warned"] = True
        warnings.warn(f"step {step} (epoch {epoch}): max|λ| grew from {state['dual_baseline']:.3g} to "
                      f"{current:.3g} over the run; if it keeps growing lower 'dual_lr' or 'variable_lr' "
                      f"({_learning_rates(solver)})", RuntimeWarning, stacklevel=3)


def _loader_generator(loader: Any) -> torch.Generator | None:
    generator = getattr(loader, "generator", None)
    return generator if isinstance(generator, torch.Generator) else None


def _set_sampler_epoch(loader: Any, epoch: int) -> None:
    """Reshuffle a ``DistributedSampler`` (or any sampler with ``set_epoch``) for ``epoch``."""
    sampler = getattr(loader, "sampler", None)
    if callable(getattr(sampler, "set_epoch", None)):
        sampler.set_epoch(epoch)


_CHECKPOINT_KEYS = {"solver": dict, "epoch": int, "history_rows": int, "steps_rows": int}
_SOLVER_KEYS = ("structure", "model", "cmp", "slacks", "optimizer", "step", "epoch", "rng")


def _apply_checkpoint(checkpoint: Any, solver: Solver, generator: torch.Generator | None) -> None:
    """Check a checkpoint's structure (errors name the key) and restore the solver and the loader RNG."""
    if not isinstance(checkpoint, dict):
        raise RunFolderError(f"not a checkpoint: expected a mapping with keys {sorted(_CHECKPOINT_KEYS)} "
                             f"(got {type(checkpoint).__name__})")
    for key, kind in _CHECKPOINT_KEYS.items():
        if not isinstance(checkpoint.get(key), kind) or isinstance(checkpoint.get(key), bool):
            raise RunFolderError(f"key {key!r}: expected {kind.__name__} (got {type(checkpoint.get(key)).__name__})")
    missing = [k for k in _SOLVER_KEYS if k not in checkpoint["solver"]]
    if missing:
        raise RunFolderError(f"key 'solver.{missing[0]}': missing from the solver state")
    rng = checkpoint.get("loader_rng")
    if generator is not None and rng is not None and not (isinstance(rng, torch.Tensor) and rng.dtype == torch.uint8
                                                          and rng.shape == generator.get_state().shape):
        raise RunFolderError("key 'loader_rng': expected the state of a torch.Generator (a uint8 tensor of shape "
                             f"{tuple(generator.get_state().shape)})")
    try:
        solver.load_state_dict(checkpoint["solver"])
    except (RuntimeError, KeyError, TypeError, IndexError) as err:
        raise RunFolderError(f"key 'solver': does not fit this solver ({' '.join(str(err).split())[:300]})") from None
    if generator is not None and rng is not None:
        generator.set_state(rng.cpu())


def _check_finite_state(model: torch.nn.Module, row: Mapping[str, Any], epoch: int) -> None:
    """Raise :class:`NonFiniteError` when the weights or the epoch's losses are not finite (before a checkpoint).

    One host sync. Under torch.distributed only what every rank shares (weights, the averaged train loss)
    is checked, so that all ranks stop together.
    """
    keys = ("train_loss",) if is_distributed() else ("train_loss", "val_loss")
    bad = [k for k, v in row.items() if k in keys and not math.isfinite(v)]
    params = [p.detach() for p in model.parameters()]
    if not bad and (not params or bool(torch.stack([p.isfinite().all().to(params[0].device) for p in params]).all())):
        return
    what = f"the {' and '.join(bad)}" if bad else "the weights"
    raise NonFiniteError(f"epoch {epoch} ended with non-finite {what.removeprefix('the ')}; its state was not "
                         "checkpointed")


def _check_positive_int(value: Any, name: str, allow_none: bool = False) -> None:
    if allow_none and value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        extra = " or None" if allow_none else ""
        raise ValueError(f"fit: expected '{name}' to be an integer ≥ 1{extra} (got {value!r})")


AVERAGING = ("none", "uniform", "ema")


def _averaged_model(model: torch.nn.Module, averaging: str, decay: float) -> AveragedModel | None:
    r"""The iterate average of ``model`` (``torch.optim.swa_utils.AveragedModel``), or ``None``.

    Uniform: :math:`\bar\theta_n = \frac1n\sum_{k\le n}\theta_k`; EMA:
    :math:`\bar\theta \leftarrow d\,\bar\theta + (1-d)\,\theta`. Buffers are averaged too.
    """
    if averaging == "none":
        return None
    multi_avg_fn = get_ema_multi_avg_fn(decay) if averaging == "ema" else None
    return AveragedModel(model, multi_avg_fn=multi_avg_fn, use_buffers=True)


def _check_averaging(averaging: Any, average_start: Any, ema_decay: Any) -> None:
    if averaging not in AVERAGING:
        raise ValueError(f"fit: expected 'averaging' to be one of {', '.join(map(repr, AVERAGING))} "
                         f"(got {averaging!r})")
    if isinstance(average_start, bool) or not isinstance(average_start, int) or average_start < 0:
        raise ValueError(f"fit: expected 'average_start' to be an integer ≥ 0 (got {average_start!r})")
    if isinstance(ema_decay, bool) or not isinstance(ema_decay, int | float) or not 0 < ema_decay < 1:
        raise ValueError(f"fit: expected 'ema_decay' to be a number in (0, 1) (got {ema_decay!r})")


def _judge(model: torch.nn.Module, loader: Any, solver: Solver, evaluate: Evaluator,
           metrics: Mapping[str, Callable] | None, tolerance: float, prefix: str) -> tuple[dict[str, float],
                                                                                        Measurement]:
    """Evaluate ``model`` on ``loader``: ``<prefix>_<metric>`` and ``<prefix>/<constraint>/…`` columns."""
    was_training = model.training
    model.eval()
    with torch.no_grad():
        values = dict(evaluate(model, loader))
        for name, metric in (metrics or {}).items():
            values[name] = metric(model, loader)
        measured = measure(solver, model, loader, tolerance=tolerance)
    model.train(was_training)
    row = {f"{prefix}_{k}": float(v) for k, v in values.items()}
    row.update(measured.columns(prefix))
    return row, measured


Candidate = tuple[str, str, torch.nn.Module, Measurement | None]  # (name, column prefix, model, measurement)


def _validate_candidates(model: torch.nn.Module, averaged: AveragedModel | None, loader: Any, solver: Solver,
                         evaluate: Evaluator, metrics: Mapping[str, Callable] | None, tolerance: float,
                         row: dict[str, Any]) -> list[Candidate]:
    """Judge the iterate (``val_*`` columns) and, once it holds iterates, the averaged model (``val_avg_*``)."""
    judged, measured = _judge(model, loader, solver, evaluate, metrics, tolerance, "val")
    row.update(judged)
    candidates: list[Candidate] = [("iterate", "val", model, measured)]
    if averaged is not None and int(averaged.n_averaged) > 0:
        judged, measured = _judge(averaged.module, loader, solver, evaluate, metrics, tolerance, "val_avg")
        row.update(judged)
        candidates.append(("averaged", "val_avg", averaged.module, measured))
    return candidates


def _check_selection_columns(select: str, objective: str, row: Mapping[str, Any],
                             metrics_row: Mapping[str, Any]) -> None:
    """Refuse a ``select`` (or, for ``feasible``, an ``objective``) column that validation did not log."""
    if select != FEASIBLE and select not in row:
        raise ValueError(f"fit: expected 'select' to be 'feasible' or one of the logged columns "
                         f"{sorted(metrics_row)} (got {select!r})")
    if select == FEASIBLE and objective not in row:
        raise ValueError(f"fit: expected 'objective' to be one of the logged columns {sorted(metrics_row)} "
                         f"(got {objective!r})")


def _summary_row(row: Mapping[str, Any]) -> dict[str, Any]:
    """The scalar metrics of a history row (no per-element columns)."""
    return {k: v for k, v in row.items() if k != "epoch" and "." not in k and "/" not in k}


def fit(solver: Solver, train_loader: Any, val_loader: Any = None, **options: Any) -> FitResult:
    """Train ``solver`` holding the run folder's lock (the full docstring is set below, from ``_fit``)."""
    run_dir = options.get("run_dir")
    with locked(run_dir if run_dir is not None and is_main_process() else None):  # one writer per run folder
        return _fit(solver, train_loader, val_loader, **options)


def _fit(
    solver: Solver,
    train_loader: Any,
    val_loader: Any = None,
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
) -> FitResult:
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
    _check_positive_int(epochs, "epochs")
    for name, value in (("checkpoint_every", checkpoint_every), ("eval_every", eval_every), ("log_every", log_every)):
        _check_positive_int(value, name)
    _check_positive_int(steps_every, "steps_every", allow_none=True)
    _check_positive_int(max_consecutive_skips, "max_consecutive_skips")
    if select_mode not in ("min", "max"):
        raise ValueError(f"fit: expected 'select_mode' to be 'min' or 'max' (got {select_mode!r})")
    _check_averaging(averaging, average_start, ema_decay)
    if isinstance(feasibility_tol, bool) or not isinstance(feasibility_tol, int | float) or not feasibility_tol >= 0:
        raise ValueError(f"fit: expected 'feasibility_tol' to be a number ≥ 0 (got {feasibility_tol!r})")
    if select is None:
        select = FEASIBLE if counted(solver.plans) else "val_loss"
    if val_loader is None:  # nothing is validated: the train loss is all there is to select by
        select = "train_loss"
    sign = 1.0 if select_mode == "min" else -1.0  # keys rank sign · value, minimised
    for name, value in (("divergence_limit", divergence_limit), ("objective_limit", objective_limit)):
        if value is not None and not (isinstance(value, int | float) and not isinstance(value, bool) and value > 0):
            raise ValueError(f"fit: expected '{name}' to be a number > 0 or None (got {value!r})")
    device = _device(solver)
    evaluate = evaluate or objective_evaluator(solver, device)
    generator = _loader_generator(train_loader)
    run_dir = Path(run_dir) if run_dir is not None else None
    main = is_main_process()
    writes = run_dir is not None and main  # under torch.distributed only rank 0 writes
    history = CsvStream(run_dir / "history.csv") if writes else None
    steps = CsvStream(run_dir / "steps.csv") if writes and steps_every else None
    state: dict[str, Any] = {"epoch": -1, "best_epoch": None, "best_key": None, "best_candidate": None,
                             "best_metrics": {}, "best_feasibility": None, "final_metrics": {},
                             "final_feasibility": None, "skipped_steps": 0, "dual_baseline": None,
                             "objective_baseline": None, "tolerance": float(feasibility_tol)}
    model = unwrap(solver.model)  # validation and best.pt use the bare module (no DDP collectives)
    averaged = _averaged_model(model, averaging, ema_decay)

    checkpoint_path = run_dir / "checkpoint.pt" if run_dir else None
    if resume:
        if checkpoint_path is None or not any(p.exists() for p in (checkpoint_path, run_dir / "checkpoint.prev.pt")):
            raise ValueError(f"fit: resume=True needs a checkpoint at {checkpoint_path} (found none); "
                             "run without resume=True first")
        checkpoint = restore_checkpoint(checkpoint_path, lambda c: _apply_checkpoint(c, solver, generator),
                                        map_location=device)
        state.update({k: checkpoint.get(k, state[k]) for k in state})
        if averaged is not None and checkpoint.get("averaged") is not None:
            averaged.load_state_dict(checkpoint["averaged"])
        if history is not None:
            history.truncate(checkpoint["history_rows"])
        if steps is not None:
            steps.truncate(checkpoint["steps_rows"])
    elif writes:
        if checkpoint_path.exists():
            raise ValueError(f"fit: {run_dir} already holds a checkpoint; pass resume=True to continue it or "
                             "choose another run_dir")
        for stream in (history, steps):
            if stream is not None:
                stream.truncate(0)

    steps_per_epoch = len(train_loader) if hasattr(train_loader, "__len__") else None
    start = state["epoch"] + 1
    bar = tqdm(total=steps_per_epoch * epochs if steps_per_epoch else None,
               initial=steps_per_epoch * start if steps_per_epoch else 0, disable=not (progress and main),
               dynamic_ncols=True,
               desc="fit")
    began = time.perf_counter()
    epoch = start
    infeasible_seen: set[str] = set()
    verdicts: dict = {}
    best_state: dict[str, torch.Tensor] | None = None  # in memory only when testing without a run folder
    consecutive_skips = 0

    def last_checkpoint() -> str:
        if checkpoint_path is None:
            return "No run folder: nothing was saved."
        if checkpoint_path.exists():
            return (f"The last checkpoint {checkpoint_path} (end of epoch {state['epoch']}) is intact; continue "
                    "with resume=True (`ceq run <file> --resume`) after the fix, listing what you changed "
                    "(`--allow-change optimizer.lr,dual_lr`).")
        return f"No checkpoint was written yet in {run_dir}."

    try:
        for epoch in range(start, epochs):
            solver.set_epoch(epoch)
            _set_sampler_epoch(train_loader, epoch)
            model.train()
            loss_sum, count, record = None, 0, None
            for batch in train_loader:
                record = solver.step(to_device(batch, device))
                if not record.skipped:
                    loss_sum = record.loss if loss_sum is None else loss_sum + record.loss
                    count += 1
                    if averaged is not None and epoch >= average_start:
                        averaged.update_parameters(model)
                    consecutive_skips = 0
                else:
                    state["skipped_steps"] += 1
                    consecutive_skips += 1
                    if consecutive_skips >= max_consecutive_skips:
                        raise NonFiniteError(f"step {record.step}: {consecutive_skips} consecutive batches were "
                                             "non-finite and skipped; the data or the learning rates are broken")
                if solver.step_count % log_every == 0 and not record.skipped:
                    loss, shown, lambdas = _magnitudes(solver, record)  # the one sync of a logging point
                    if progress:
                        bar.set_postfix(_postfix(solver, loss, shown, lambdas), refresh=False)
                    _check_divergence(solver, loss, lambdas, state, divergence_limit, record.step, epoch,
                                      last_checkpoint, objective_limit)
                if steps is not None and solver.step_count % steps_every == 0 and not record.skipped:
                    steps.append({"step": record.step, "epoch": epoch,
                                  **dict(zip(("loss", "lagrangian"), torch.stack(
                                      [record.loss.float(), record.lagrangian.float()]).tolist(), strict=True)),
                                  **_constraint_columns(record)})
                bar.update(1)
            mean_loss = loss_sum / count if count else torch.full((), float("nan"), device=device)
            row: dict[str, Any] = {"epoch": epoch, "train_loss": float(all_reduce_mean(mean_loss))}
            candidates: list[Candidate] = []
            if main and val_loader is not None and ((epoch + 1) % eval_every == 0 or epoch == epochs - 1):
                candidates = _validate_candidates(model, averaged, val_loader, solver, evaluate, metrics,
                                                  feasibility_tol, row)
                state["final_feasibility"] = candidates[0][3].verdict()
            elif val_loader is None:
                candidates.append(("iterate", "val", model, None))
            row.update(_constraint_columns(record))
            if on_epoch is not None:
                on_epoch(epoch, row)
            if history is not None:
                history.append(row)
            metrics_row = _summary_row(row)
            if candidates and val_loader is not None:
                _check_selection_columns(select, objective, row, metrics_row)
            for candidate, prefix, judged_model, measured in candidates:
                key = selection_key(select, objective, sign, row, prefix, measured)
                if key is None or (state["best_key"] is not None and tuple(key) >= tuple(state["best_key"])):
                    continue
                state.update(best_epoch=epoch, best_key=list(key), best_candidate=candidate,
                             best_metrics=metrics_row,
                             best_feasibility=measured.verdict() if measured is not None else None)
                if writes:
                    atomic_torch_save({"model": judged_model.state_dict(), "epoch": epoch, "metrics": metrics_row,
                                       "candidate": candidate}, run_dir / "best.pt")
                elif test_loader is not None:
                    best_state = {k: v.detach().clone() for k, v in judged_model.state_dict().items()}
            _check_finite_state(model, row, epoch)  # a non-finite state never replaces the last checkpoint
            state["epoch"] = epoch
            state["final_metrics"] = metrics_row
            verdicts = warn_new_infeasible(solver, infeasible_seen, f"epoch {epoch}")  # one read per epoch
            if writes and ((epoch + 1) % checkpoint_every == 0 or epoch == epochs - 1):
                save_checkpoint({"solver": solver.state_dict(), **state,
                                 "averaged": averaged.state_dict() if averaged is not None else None,
                                   "loader_rng": generator.get_state() if generator is not None else None,
                                   "history_rows": len(history), "steps_rows": len(steps) if steps else 0},
                                  checkpoint_path)
    except NonFiniteError as err:
        skip = ("" if getattr(solver, "on_nonfinite", "raise") == "skip" else " To skip such batches instead, set "
                "`training.on_nonfinite: skip` (Solver(on_nonfinite='skip')).")
        raise NonFiniteError(f"{err} (epoch {epoch}). {last_checkpoint()}{skip}") from None
    finally:
        bar.close()
    result = FitResult(state["best_epoch"], dict(state["best_metrics"]), dict(state["final_metrics"]), run_dir,
                       state["epoch"] + 1, state["best_candidate"] or "iterate",
                       describe_selection(select, objective, select_mode, state), state["best_feasibility"])
    tested = None
    if test_loader is not None and main and state["best_epoch"] is not None:
        tested = _test_selected(solver, model, run_dir if writes else None, best_state, test_loader, evaluate,
                                metrics, feasibility_tol)
    if writes:
        summary = read_json(run_dir / "metrics.json")
        summary.update(best_epoch=result.best_epoch, best=result.best_metrics, final=result.final_metrics,
                       epochs=result.epochs, select=select, select_mode=select_mode,
                       skipped_steps=state["skipped_steps"],
                       feasibility={k: v.as_dict() for k, v in verdicts.items()},
                       selected=result.candidate, selection=result.selection,
                       feasible=(state["best_feasibility"] or {}).get("feasible"),
                       measured_constraints={"tolerance": float(feasibility_tol), "rule": FEASIBILITY_RULE,
                                    "best": state["best_feasibility"], "final": state["final_feasibility"]},
                       averaging={"kind": averaging, "start": average_start, "decay": ema_decay},
                       formulation=solver.formulation.name, formulation_options=solver.formulation.options(),
                       structure=describe(solver))
        if select == FEASIBLE:
            summary["objective"] = objective
        if tested is not None:
            summary["test"], summary["measured_constraints"]["test"] = tested
        summary.setdefault("seconds", 0.0)
        summary["seconds"] = float(summary["seconds"]) + (time.perf_counter() - began)
        write_json(run_dir / "metrics.json", summary)
        if plot:
            from constrained_eq.run.plots import plot_run

            plot_run(run_dir)
    if tested is not None:
        result.test, result.test_feasibility = tested
    result.averaged = averaged.module if averaged is not None and int(averaged.n_averaged) > 0 else None
    return result


FEASIBILITY_RULE = ("feasible when every counted constraint's largest element violation over the split "
                    "(|h| for an equality, [g - b]+ for an inequality, [|h| - u]+ with a slack) is <= tolerance; "
                    "penalties and homotopy (gamma) constraints are not counted")


def _test_selected(solver: Solver, model: torch.nn.Module, run_dir: Path | None, best_state: dict | None,
                   loader: Any, evaluate: Evaluator, metrics: Mapping[str, Callable] | None,
                   tolerance: float) -> tuple[dict[str, float], dict[str, Any]]:
    """Metrics and feasibility verdict of the selected model on the test split (a copy of the model)."""
    selected = copy.deepcopy(model)
    state = load_checkpoint(run_dir / "best.pt", map_location=_device(solver))["model"] if run_dir else best_state
    if state is not None:
        selected.load_state_dict(state)
    row, measured = _judge(selected, loader, solver, evaluate, metrics, tolerance, "test")
    return {k.removeprefix("test_"): v for k, v in _summary_row(row).items()}, measured.verdict()


fit.__doc__ = _fit.__doc__
fit.__signature__ = inspect.signature(_fit)  # type: ignore[attr-defined]
