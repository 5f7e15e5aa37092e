"""The training loop: ``fit(solver, train_loader, val_loader)`` with history, checkpoints and resume.

Each epoch calls ``solver.set_epoch(e)`` (the CR schedule), one ``solver.step(batch)`` per batch and,
every ``eval_every`` epochs, a validation pass. What is measured goes to the run folder as it is
produced (see :mod:`constrained_eq.runs`), never into a growing in-memory list. Only throttled
logging reads values back to the host: the progress bar every ``log_every`` steps, ``steps.csv``
every ``steps_every`` steps and one read per epoch for ``history.csv``.

Resume is exact: the checkpoint at the end of epoch ``e`` holds the solver's state (model, γ, λ, u,
optimizers, counters, global RNG) and the state of the train loader's ``torch.Generator``, so the
shuffle order of every later epoch is the one an uninterrupted run would have drawn.

Under ``torch.distributed`` (see :mod:`constrained_eq.distributed`) every rank runs ``fit``: the train
loader's sampler is told the epoch (``DistributedSampler.set_epoch``), the epoch's train loss is averaged
over ranks, and only rank 0 validates, shows progress and writes the run folder; every rank reads the
checkpoint on resume.

Faults stop a run without losing anything: a non-finite loss, violation or gradient raises
:class:`NonFiniteError` naming the step, the epoch and the last checkpoint (left as it was), unless
the solver skips such batches (``on_nonfinite="skip"``; their number is ``skipped_steps`` in
``metrics.json``). At the throttled logging points (every ``log_every`` steps, no extra host sync
elsewhere) the multipliers λ and the constrained targets γ are checked: beyond ``divergence_limit``
(or non-finite) fit raises :class:`DivergenceError` naming the learning rates to lower; a growth by
``1e3×`` over the run only warns.
"""

from __future__ import annotations

import inspect
import math
import time
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from constrained_eq.distributed import all_reduce_mean, is_distributed, is_main_process, unwrap
from constrained_eq.engine import NonFiniteError, Solver, StepRecord
from constrained_eq.runs import (
    CsvStream,
    RunFolderError,
    atomic_torch_save,
    locked,
    read_json,
    restore_checkpoint,
    save_checkpoint,
    write_json,
)

__all__ = ["fit", "FitResult", "to_device", "objective_evaluator", "DivergenceError"]

DIVERGENCE_GROWTH = 1e3  # warn when max|λ| or max|γ| grows this much over the run


class DivergenceError(FloatingPointError):
    """The multipliers λ or the constrained targets γ exploded; the last checkpoint is intact."""

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
    """

    best_epoch: int | None
    best_metrics: dict[str, float] = field(default_factory=dict)
    final_metrics: dict[str, float] = field(default_factory=dict)
    run_dir: Path | None = None
    epochs: int = 0


def to_device(batch: Any, device: torch.device) -> Any:
    """Move every tensor of a (nested) batch to ``device``; named tuples keep their type."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, tuple) and hasattr(batch, "_fields"):
        return type(batch)(*(to_device(b, device) for b in batch))
    if isinstance(batch, tuple | list):
        return type(batch)(to_device(b, device) for b in batch)
    if isinstance(batch, dict):
        return {k: to_device(v, device) for k, v in batch.items()}
    if callable(getattr(batch, "to", None)):  # PyG Data/Batch and other objects that move themselves
        return batch.to(device)
    return batch


def _batch_size(batch: Any) -> int:
    if isinstance(batch, torch.Tensor):
        return batch.shape[0] if batch.dim() else 1
    if hasattr(batch, "num_graphs"):
        return int(batch.num_graphs)
    if isinstance(batch, tuple | list) and batch:
        return _batch_size(batch[0])
    return 1


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


def _magnitudes(record: StepRecord) -> tuple[float, dict[str, float], dict[str, float]]:
    """Loss, max|γ| and max|λ| per constraint, read back to the host in one sync."""
    zero = record.loss.new_zeros(())
    gammas = {k: v.detach().abs().max().float() for k, v in record.values.items() if v.numel()}
    lambdas = {k: m.abs().max().float() for k, m in record.multipliers.items() if m.numel()}
    values = torch.stack([record.loss.float().to(zero.device), *(t.to(zero.device) for t in gammas.values()),
                          *(t.to(zero.device) for t in lambdas.values())]).tolist()
    return (values[0], dict(zip(gammas, values[1:1 + len(gammas)], strict=True)),
            dict(zip(lambdas, values[1 + len(gammas):], strict=True)))


def _postfix(loss: float, gammas: Mapping[str, float], lambdas: Mapping[str, float]) -> dict[str, str]:
    gamma, lam = max(gammas.values(), default=0.0), max(lambdas.values(), default=0.0)
    return {"loss": f"{loss:.4g}", "max|γ|": f"{gamma:.3g}", "max|λ|": f"{lam:.3g}"}


def _learning_rates(solver: Solver) -> str:
    lrs = [group["lr"] for opt in getattr(solver.optimizer, "primal_optimizers", []) for group in opt.param_groups]
    return f"dual_lr={solver.dual_lr:g}, variable_lr/primal lr={[float(f'{lr:g}') for lr in lrs]}"


def _check_divergence(solver: Solver, gammas: Mapping[str, float], lambdas: Mapping[str, float], state: dict,
                      limit: float | None, step: int, epoch: int, checkpoint: Callable[[], str]) -> None:
    """Raise :class:`DivergenceError` past ``limit``; warn once on a 1e3× growth over the run."""
    if limit is None:
        return
    for what, values in (("|λ|", lambdas), ("|γ|", gammas)):
        for key, value in values.items():
            if not math.isfinite(value) or value > limit:
                raise DivergenceError(
                    f"step {step} (epoch {epoch}): the duals diverged: max{what} of constraint {key!r} is {value:.3g} "
                    f"(limit {limit:g}); lower the learning rates ({_learning_rates(solver)}): 'dual_lr' first, "
                    f"then 'variable_lr'. {checkpoint()}")
    current = max([*gammas.values(), *lambdas.values()], default=0.0)
    if state.get("dual_baseline") is None:
        state["dual_baseline"] = current
        return
    if not state.get("dual_growth_warned") and current > DIVERGENCE_GROWTH * max(state["dual_baseline"], 1.0):
        state["dual_growth_warned"] = True
        warnings.warn(f"step {step} (epoch {epoch}): max|λ|, max|γ| grew from {state['dual_baseline']:.3g} to "
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
_SOLVER_KEYS = ("problem", "formulation", "model", "cmp", "slacks", "optimizer", "step", "epoch", "rng")


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
    select: str = "val_loss",
    select_mode: str = "min",
    plot: bool = True,
    divergence_limit: float | None = 1e6,
    max_consecutive_skips: int = 100,
) -> FitResult:
    """Train ``solver`` for ``epochs`` epochs, validate, keep the best model, checkpoint and resume.

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
        select (str, optional): History column that picks the best epoch (default: ``"val_loss"``).
        select_mode (str, optional): ``"min"`` (losses, errors) or ``"max"`` (accuracies) of ``select``
            (default: ``"min"``).
        plot (bool, optional): Write ``plots/*.png`` at the end (default: :obj:`True`).
        divergence_limit (float, optional): Largest max|λ| or max|γ| allowed at a logging point before
            :class:`DivergenceError`; ``None`` turns the check off (default: ``1e6``).
        max_consecutive_skips (int, optional): With ``on_nonfinite="skip"``, stop with :class:`NonFiniteError`
            after this many skipped batches in a row (default: 100).

    A run folder is locked (:class:`~constrained_eq.runs.RunLock`) while ``fit`` writes it: a second
    writer is refused naming the holder's pid.

    Returns:
        FitResult: best epoch and metrics, final metrics, run folder.

    Raises:
        NonFiniteError: A loss, violation or gradient was NaN/Inf (solver with ``on_nonfinite="raise"``);
            the message names the step, the epoch and the last checkpoint, which is intact.
        DivergenceError: max|λ| or max|γ| passed ``divergence_limit``; names the learning rates to lower.
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
    sign = 1.0 if select_mode == "min" else -1.0  # best_value is kept as sign · value, minimised
    if divergence_limit is not None and not (isinstance(divergence_limit, int | float)
                                             and not isinstance(divergence_limit, bool) and divergence_limit > 0):
        raise ValueError(f"fit: expected 'divergence_limit' to be a number > 0 or None (got {divergence_limit!r})")
    device = _device(solver)
    evaluate = evaluate or objective_evaluator(solver, device)
    generator = _loader_generator(train_loader)
    run_dir = Path(run_dir) if run_dir is not None else None
    main = is_main_process()
    writes = run_dir is not None and main  # under torch.distributed only rank 0 writes
    history = CsvStream(run_dir / "history.csv") if writes else None
    steps = CsvStream(run_dir / "steps.csv") if writes and steps_every else None
    state: dict[str, Any] = {"epoch": -1, "best_epoch": None, "best_value": math.inf, "best_metrics": {},
                             "final_metrics": {}, "skipped_steps": 0, "dual_baseline": None}

    checkpoint_path = run_dir / "checkpoint.pt" if run_dir else None
    if resume:
        if checkpoint_path is None or not any(p.exists() for p in (checkpoint_path, run_dir / "checkpoint.prev.pt")):
            raise ValueError(f"fit: resume=True needs a checkpoint at {checkpoint_path} (found none); "
                             "run without resume=True first")
        checkpoint = restore_checkpoint(checkpoint_path, lambda c: _apply_checkpoint(c, solver, generator),
                                        map_location=device)
        state.update({k: checkpoint.get(k, state[k]) for k in state})
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
    model = unwrap(solver.model)  # validation and best.pt use the bare module (no DDP collectives)
    epoch = start
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
                    consecutive_skips = 0
                else:
                    state["skipped_steps"] += 1
                    consecutive_skips += 1
                    if consecutive_skips >= max_consecutive_skips:
                        raise NonFiniteError(f"step {record.step}: {consecutive_skips} consecutive batches were "
                                             "non-finite and skipped; the data or the learning rates are broken")
                if solver.step_count % log_every == 0 and not record.skipped:
                    loss, gammas, lambdas = _magnitudes(record)  # the one sync of a logging point
                    if progress:
                        bar.set_postfix(_postfix(loss, gammas, lambdas), refresh=False)
                    _check_divergence(solver, gammas, lambdas, state, divergence_limit, record.step, epoch,
                                      last_checkpoint)
                if steps is not None and solver.step_count % steps_every == 0 and not record.skipped:
                    steps.append({"step": record.step, "epoch": epoch,
                                  **dict(zip(("loss", "lagrangian"), torch.stack(
                                      [record.loss.float(), record.lagrangian.float()]).tolist(), strict=True)),
                                  **_constraint_columns(record)})
                bar.update(1)
            mean_loss = loss_sum / count if count else torch.full((), float("nan"), device=device)
            row: dict[str, Any] = {"epoch": epoch, "train_loss": float(all_reduce_mean(mean_loss))}
            if main and val_loader is not None and ((epoch + 1) % eval_every == 0 or epoch == epochs - 1):
                model.eval()
                with torch.no_grad():
                    values = dict(evaluate(model, val_loader))
                    for name, metric in (metrics or {}).items():
                        values[name] = metric(model, val_loader)
                model.train()
                row.update({f"val_{k}": float(v) for k, v in values.items()})
            row.update(_constraint_columns(record))
            if history is not None:
                history.append(row)
            metrics_row = {k: v for k, v in row.items() if k != "epoch" and "." not in k}
            key = select if val_loader is not None else "train_loss"
            if key in row:
                if math.isfinite(row[key]) and sign * row[key] < state["best_value"]:
                    state.update(best_epoch=epoch, best_value=sign * row[key], best_metrics=metrics_row)
                    if writes:
                        atomic_torch_save({"model": model.state_dict(), "epoch": epoch, "metrics": metrics_row},
                                          run_dir / "best.pt")
            elif any(k.startswith("val_") for k in row):
                raise ValueError(f"fit: expected 'select' to be one of the logged columns "
                                 f"{sorted(metrics_row)} (got {select!r})")
            _check_finite_state(model, row, epoch)  # a non-finite state never replaces the last checkpoint
            state["epoch"] = epoch
            state["final_metrics"] = metrics_row
            if writes and ((epoch + 1) % checkpoint_every == 0 or epoch == epochs - 1):
                save_checkpoint({"solver": solver.state_dict(), **state,
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
                       state["epoch"] + 1)
    if writes:
        summary = read_json(run_dir / "metrics.json")
        summary.update(best_epoch=result.best_epoch, best=result.best_metrics, final=result.final_metrics,
                       epochs=result.epochs, select=select, select_mode=select_mode,
                       skipped_steps=state["skipped_steps"])
        summary.setdefault("seconds", 0.0)
        summary["seconds"] = float(summary["seconds"]) + (time.perf_counter() - began)
        write_json(run_dir / "metrics.json", summary)
        if plot:
            from constrained_eq.plots import plot_run

            plot_run(run_dir)
    return result


fit.__doc__ = _fit.__doc__
fit.__signature__ = inspect.signature(_fit)  # type: ignore[attr-defined]
