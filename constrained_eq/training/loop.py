"""The training loop: ``fit(solver, train_loader, val_loader)`` with history, checkpoints and resume.

Each epoch calls ``solver.set_epoch(e)`` (the CR schedule), one ``solver.step(batch)`` per batch and,
every ``evaluation.every`` epochs, a validation pass. What is measured goes to the run folder as it is
produced (see :mod:`constrained_eq.training.run_folder`), never into a growing in-memory list. Only throttled
logging reads values back to the host: the progress bar every ``logging.every`` steps, ``steps.csv``
every ``logging.steps_every`` steps and one read per epoch for ``history.csv``.

Resume is exact: the checkpoint at the end of epoch ``e`` holds the solver's state (model, γ, λ, u,
optimizers, counters, global RNG) and the state of the train loader's ``torch.Generator``, so the
shuffle order of every later epoch is the one an uninterrupted run would have drawn.

Under ``torch.distributed`` (see :mod:`constrained_eq._utils.distributed`) every rank runs ``fit``: the train
loader's sampler is told the epoch (``DistributedSampler.set_epoch``), the epoch's train loss is averaged
over ranks, and only rank 0 validates, shows progress and writes the run folder; every rank reads the
checkpoint on resume.

Faults stop a run without losing anything: a non-finite loss, violation or gradient raises
:class:`NonFiniteError` naming the step, the epoch and the last checkpoint (left as it was), unless
the solver skips such batches (``on_nonfinite="skip"``; their number is ``skipped_steps`` in
``metrics.json``). At the throttled logging points (every ``logging.every`` steps, no extra host sync
elsewhere) divergence is judged by the multipliers and the objective, never by a target's magnitude: a
max|λ| beyond ``limits.divergence`` or an objective beyond ``limits.objective`` times its first logged value
(or either non-finite) makes fit raise :class:`DivergenceError` naming the learning rates to lower; a
growth of max|λ| by ``1e3×`` over the run only warns.

At every evaluation each constraint is measured over the whole validation split
(:mod:`constrained_eq.core.solver.split_feasibility`); ``Selection(column="feasible")`` keeps the best feasible
evaluation (:mod:`constrained_eq.training.selection`); ``averaging`` adds the average of the iterates as a candidate.

The loop is here; its parts are in :mod:`~constrained_eq.training.settings` (the settings and their
documentation), :mod:`~constrained_eq.training.checkpointing`, :mod:`~constrained_eq.training.validation`,
:mod:`~constrained_eq.training.monitoring`, :mod:`~constrained_eq.training.certificate`,
:mod:`~constrained_eq.training.summary` and :mod:`~constrained_eq.training.callbacks`.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from constrained_eq._utils.atomic_io import atomic_torch_save
from constrained_eq._utils.distributed import all_reduce_mean, is_main_process, unwrap
from constrained_eq._utils.loaders import to_device
from constrained_eq.core.solver.cooper_bridge import NonFiniteError
from constrained_eq.core.solver.engine import Solver, StepRecord
from constrained_eq.core.solver.feasibility import warn_new_infeasible
from constrained_eq.training.callbacks import Callback, call_hooks, check_callbacks
from constrained_eq.training.certificate import certify_selected
from constrained_eq.training.checkpointing import (
    check_finite_state,
    last_checkpoint_note,
    loader_generator,
    problem_hashes,
    resume_fit,
    save_fit_checkpoint,
    set_sampler_epoch,
    start_fresh,
)
from constrained_eq.training.monitoring import check_divergence, constraint_columns, magnitudes, postfix
from constrained_eq.training.run_folder import CsvStream, load_checkpoint, locked, read_json
from constrained_eq.training.selection import describe_selection, selection_key
from constrained_eq.training.settings import (
    Averaging,
    Evaluation,
    FitResult,
    FitSettings,
    Limits,
    Logging,
    Selection,
    check_settings,
)
from constrained_eq.training.summary import write_fit_summary
from constrained_eq.training.validation import (
    Candidate,
    averaged_model,
    check_selection_columns,
    model_device,
    objective_evaluator,
    summary_row,
    test_selected,
    validate_candidates,
)

__all__ = ["fit"]


def fit(solver: Solver, train_loader: Any, val_loader: Any = None, *, epochs: int,
        run_dir: str | Path | None = None, resume: bool = False, test_loader: Any = None,
        checkpoint_every: int = 1, progress: bool = True, evaluation: Evaluation = Evaluation(),
        selection: Selection = Selection(), averaging: Averaging = Averaging(), limits: Limits = Limits(),
        logging: Logging = Logging(), callbacks: Sequence[Callback] = ()) -> FitResult:
    """Train ``solver`` for ``epochs`` epochs, validate, keep the best model, checkpoint and resume.

    At every evaluation each constraint is measured over the whole validation split
    (:func:`constrained_eq.core.solver.split_feasibility.measure`): history columns ``val/<constraint>/value[i]`` and
    ``val/<constraint>/violation[i]``, and a feasibility verdict under ``evaluation.feasibility_tol``.

    Args:
        solver (Solver): The solver (model, problem, formulation, optimizers).
        train_loader (iterable): Training batches. For exact resume give it a seeded
            ``torch.Generator`` (``DataLoader(..., shuffle=True, generator=g)``); its state is checkpointed.
        val_loader (iterable, optional): Validation batches (default: none; selection then uses ``train_loss``).
        epochs (int): Total number of epochs (including those done before a resume).
        run_dir (str or Path, optional): Run folder for ``history.csv``, checkpoints, ``best.pt`` and
            ``metrics.json`` (default: none, nothing is written and ``resume`` is unavailable). Draw its plots
            with :func:`constrained_eq.plot_run`.
        resume (bool, optional): Continue from ``run_dir/checkpoint.pt`` (default: :obj:`False`).
        test_loader (iterable, optional): Evaluate the selected model on it at the end (``test`` and
            ``feasibility.test`` in ``metrics.json``; default: none).
        checkpoint_every (int, optional): Write ``checkpoint.pt`` every N epochs and at the end (default: 1).
        progress (bool, optional): Show a tqdm progress bar (default: :obj:`True`).
        evaluation (Evaluation, optional): How often and by what the model is validated, and the feasibility
            tolerance (:class:`~constrained_eq.training.settings.Evaluation`).
        selection (Selection, optional): Which evaluated model is kept and which is deployed
            (:class:`~constrained_eq.training.settings.Selection`).
        averaging (Averaging, optional): An average of the iterates as a second candidate
            (:class:`~constrained_eq.training.settings.Averaging`).
        limits (Limits, optional): When a run is stopped as diverged or broken
            (:class:`~constrained_eq.training.settings.Limits`).
        logging (Logging, optional): The throttled logging points (:class:`~constrained_eq.training.settings.Logging`).
        callbacks (sequence of Callback, optional): Code run at the start and end of the fit and of each epoch
            (:mod:`constrained_eq.training.callbacks`): LR schedules, clipping, a logger, your own.

    A run folder is locked (:class:`~constrained_eq.training.run_folder.RunLock`) while ``fit`` writes it: a
    second writer is refused naming the holder's pid.

    Returns:
        FitResult: best epoch and metrics, final metrics, run folder, test metrics and the deployed model's
        certificate.

    Raises:
        NonFiniteError: A loss, violation or gradient was NaN/Inf (solver with ``on_nonfinite="raise"``);
            the message names the step, the epoch and the last checkpoint, which is intact.
        DivergenceError: max|λ| or the objective passed its limit; names the learning rates to lower.
        RunFolderError: Another process writes ``run_dir``; or no checkpoint of the folder can be resumed
            (the latest damaged and the previous one too: both named).
        ValueError: On bad arguments, a missing checkpoint with ``resume=True``, a run folder that already
            holds a checkpoint with ``resume=False``, or a selection column that is never logged.
    """
    settings = FitSettings(epochs=epochs, run_dir=run_dir, resume=resume, test_loader=test_loader,
                           checkpoint_every=checkpoint_every, progress=progress, evaluation=evaluation,
                           selection=selection, averaging=averaging, limits=limits, logging=logging,
                           callbacks=check_callbacks(callbacks))
    with locked(run_dir if run_dir is not None and is_main_process() else None):  # one writer per run folder
        return _Fit(solver, train_loader, val_loader, settings).run()


class _Fit:
    """One call of :func:`fit`: the run's pieces, fit's checkpointed ``state``, and the loop in short steps."""

    def __init__(self, solver: Solver, train_loader: Any, val_loader: Any, settings: FitSettings) -> None:
        self.solver, self.train_loader, self.val_loader, self.o = solver, train_loader, val_loader, settings
        self.select, self.sign = check_settings(settings, solver, val_loader is not None)
        self.device = model_device(solver)
        self.evaluate = settings.evaluation.evaluate or objective_evaluator(solver, self.device)
        self.generator = loader_generator(train_loader)
        self.run_dir = Path(settings.run_dir) if settings.run_dir is not None else None
        self.main = is_main_process()
        self.writes = self.run_dir is not None and self.main  # under torch.distributed only rank 0 writes
        self.history = CsvStream(self.run_dir / "history.csv") if self.writes else None
        self.steps = CsvStream(self.run_dir / "steps.csv") if self.writes and settings.logging.steps_every else None
        self.state: dict[str, Any] = {
            "epoch": -1, "best_epoch": None, "best_key": None, "best_candidate": None, "best_metrics": {},
            "best_feasibility": None, "final_metrics": {}, "final_feasibility": None, "skipped_steps": 0,
            "dual_baseline": None, "objective_baseline": None, "tolerance": float(settings.evaluation.feasibility_tol),
            "seconds": None}  # wall time of the epochs up to the checkpoint, over every resume
        self.model = unwrap(solver.model)  # validation and best.pt use the bare module (no DDP collectives)
        self.averaged = averaged_model(self.model, settings.averaging.kind, settings.averaging.ema_decay)
        self.checkpoint_path = self.run_dir / "checkpoint.pt" if self.run_dir else None
        self.infeasible_seen: set[str] = set()
        self.verdicts: dict = {}
        self.best_state: dict[str, torch.Tensor] | None = None  # in memory when there is no run folder
        self.consecutive_skips = 0
        self.trained = False  # whether this process trained an epoch (a resume of a finished run trains none)

    def run(self) -> FitResult:
        """Resume or start, train the remaining epochs, then test the selected model and write the summary."""
        call_hooks(self.o.callbacks, "on_fit_start", self.solver)
        if self.o.resume:
            resume_fit(self.solver, self.checkpoint_path, self.generator, self.device, self.state, self.averaged,
                       (self.history, self.steps))
        elif self.writes:
            start_fresh(self.run_dir, self.checkpoint_path, (self.history, self.steps))
        self.seconds_before = self._seconds_before()
        start = self.state["epoch"] + 1
        per_epoch = len(self.train_loader) if hasattr(self.train_loader, "__len__") else None
        self.bar = tqdm(total=per_epoch * self.o.epochs if per_epoch else None,
                        initial=per_epoch * start if per_epoch else 0, disable=not (self.o.progress and self.main),
                        dynamic_ncols=True, desc="fit")
        self.began = time.perf_counter()
        self.epoch = start
        try:
            for epoch in range(start, self.o.epochs):
                self.epoch = epoch
                self._epoch(epoch)
        except NonFiniteError as err:
            skip = ("" if getattr(self.solver, "on_nonfinite", "raise") == "skip" else " To skip such batches "
                    "instead, set `training.on_nonfinite: skip` (Solver(on_nonfinite='skip')).")
            raise NonFiniteError(f"{err} (epoch {self.epoch}). {self._last_checkpoint()}{skip}") from None
        finally:
            self.bar.close()
        return self._finish()

    def _seconds_before(self) -> float:
        """Training seconds spent before this process: the checkpoint's, or (older checkpoints) metrics.json's."""
        if self.state["seconds"] is not None:
            return float(self.state["seconds"])
        if self.o.resume and self.writes:
            return float(read_json(self.run_dir / "metrics.json").get("seconds", 0.0))
        return 0.0

    def _seconds(self) -> float:
        return self.seconds_before + (time.perf_counter() - self.began)

    def _last_checkpoint(self) -> str:
        return last_checkpoint_note(self.checkpoint_path, self.run_dir, self.state["epoch"])

    # ------------------------------------------------------------------ one epoch
    def _epoch(self, epoch: int) -> None:
        """Train, validate, log the row, select, check the state is finite, checkpoint."""
        record, mean_loss = self._train_epoch(epoch)
        row: dict[str, Any] = {"epoch": epoch, "train_loss": float(all_reduce_mean(mean_loss))}
        candidates = self._validate(epoch, row)
        row.update(constraint_columns(record))
        call_hooks(self.o.callbacks, "on_epoch_end", epoch, row)
        if self.history is not None:
            self.history.append(row)
        metrics_row = summary_row(row)
        if candidates and self.val_loader is not None:
            check_selection_columns(self.select, self.o.selection.objective, row, metrics_row)
        self._select(epoch, row, metrics_row, candidates)
        check_finite_state(self.model, row, epoch)  # a non-finite state never replaces the last checkpoint
        self.state["epoch"] = epoch
        self.state["final_metrics"] = metrics_row
        self.verdicts = warn_new_infeasible(self.solver, self.infeasible_seen, f"epoch {epoch}")  # one read
        if self.writes and ((epoch + 1) % self.o.checkpoint_every == 0 or epoch == self.o.epochs - 1):
            self.state["seconds"] = self._seconds()
            save_fit_checkpoint(self.checkpoint_path, self.solver, self.state, self.averaged, self.generator,
                                self.history, self.steps, problem_sha256=problem_hashes(self.run_dir)[0])
        self.trained = True

    def _train_epoch(self, epoch: int) -> tuple[StepRecord | None, torch.Tensor]:
        """One pass over the train loader; returns the last step's record and the mean loss (on the device)."""
        self.solver.set_epoch(epoch)
        set_sampler_epoch(self.train_loader, epoch)
        call_hooks(self.o.callbacks, "on_epoch_start", epoch)
        self.model.train()
        loss_sum, count, record = None, 0, None
        for batch in self.train_loader:
            record = self.solver.step(to_device(batch, self.device))
            if not record.skipped:
                loss_sum = record.loss if loss_sum is None else loss_sum + record.loss
                count += 1
                if self.averaged is not None and epoch >= self.o.averaging.start:
                    self.averaged.update_parameters(self.model)
                self.consecutive_skips = 0
                self._log_step(record, epoch)
            else:
                self._skipped(record)
            self.bar.update(1)
        return record, loss_sum / count if count else torch.full((), float("nan"), device=self.device)

    def _skipped(self, record: StepRecord) -> None:
        self.state["skipped_steps"] += 1
        self.consecutive_skips += 1
        if self.consecutive_skips >= self.o.limits.max_consecutive_skips:
            raise NonFiniteError(f"step {record.step}: {self.consecutive_skips} consecutive batches were "
                                 "non-finite and skipped; the data or the learning rates are broken")

    def _log_step(self, record: StepRecord, epoch: int) -> None:
        """At the throttled points: progress bar and divergence check (one sync), and a ``steps.csv`` row."""
        solver, o = self.solver, self.o
        if solver.step_count % o.logging.every == 0:
            loss, shown, lambdas = magnitudes(solver, record)  # the one sync of a logging point
            if o.progress:
                self.bar.set_postfix(postfix(solver, loss, shown, lambdas), refresh=False)
            check_divergence(solver, loss, lambdas, self.state, o.limits.divergence, record.step, epoch,
                             self._last_checkpoint, o.limits.objective)
        if self.steps is not None and solver.step_count % o.logging.steps_every == 0:
            losses = torch.stack([record.loss.float(), record.lagrangian.float()]).tolist()
            self.steps.append({"step": record.step, "epoch": epoch,
                               **dict(zip(("loss", "lagrangian"), losses, strict=True)),
                               **constraint_columns(record)})

    def _validate(self, epoch: int, row: dict[str, Any]) -> list[Candidate]:
        """Judge the candidates every ``evaluation.every`` epochs and at the last (rank 0); columns go to ``row``."""
        o = self.o
        due = (epoch + 1) % o.evaluation.every == 0 or epoch == o.epochs - 1
        if self.main and self.val_loader is not None and due:
            candidates = validate_candidates(self.model, self.averaged, self.val_loader, self.solver, self.evaluate,
                                             o.evaluation.metrics, o.evaluation.feasibility_tol, row)
            self.state["final_feasibility"] = candidates[0][3].verdict()
            return candidates
        return [("iterate", "val", self.model, None)] if self.val_loader is None else []

    def _select(self, epoch: int, row: dict[str, Any], metrics_row: dict[str, Any],
                candidates: list[Candidate]) -> None:
        """Keep a candidate that ranks before the best so far: in ``best.pt``, or in memory for the test split."""
        for candidate, prefix, judged_model, measured in candidates:
            key = selection_key(self.select, self.o.selection.objective, self.sign, row, prefix, measured)
            if key is None or (self.state["best_key"] is not None and tuple(key) >= tuple(self.state["best_key"])):
                continue
            self.state.update(best_epoch=epoch, best_key=list(key), best_candidate=candidate,
                              best_metrics=metrics_row,
                              best_feasibility=measured.verdict() if measured is not None else None)
            if self.writes:
                atomic_torch_save({"model": judged_model.state_dict(), "epoch": epoch, "metrics": metrics_row,
                                   "candidate": candidate}, self.run_dir / "best.pt")
            else:  # kept in memory for the test split and the certificate
                self.best_state = {k: v.detach().clone() for k, v in judged_model.state_dict().items()}

    # ------------------------------------------------------------------ the end
    def _finish(self) -> FitResult:
        state, o = self.state, self.o
        result = FitResult(state["best_epoch"], dict(state["best_metrics"]), dict(state["final_metrics"]),
                           self.run_dir, state["epoch"] + 1, state["best_candidate"] or "iterate",
                           describe_selection(self.select, o.selection.objective, o.selection.mode, state),
                           state["best_feasibility"])
        tested = None
        if o.test_loader is not None and self.main and state["best_epoch"] is not None:
            tested = test_selected(self.solver, self.model, self.run_dir if self.writes else None, self.best_state,
                                   o.test_loader, self.evaluate, o.evaluation.metrics, o.evaluation.feasibility_tol)
        if self.main and state["epoch"] >= 0:
            self._certify(result)
        if self.writes:
            write_fit_summary(self.run_dir / "metrics.json", result, tested, state=self.state, settings=self.o,
                              select=self.select, verdicts=self.verdicts, solver=self.solver, trained=self.trained,
                              seconds=self._seconds())
        if tested is not None:
            result.test, result.test_feasibility = tested
        averaged = self.averaged
        result.averaged = averaged.module if averaged is not None and int(averaged.n_averaged) > 0 else None
        call_hooks(self.o.callbacks, "on_fit_end", result)
        return result

    def _certify(self, result: FitResult) -> None:
        """Measure every constraint exactly on the deployed model (selected, averaged or projected)."""
        best = self.run_dir / "best.pt" if self.writes else None
        state = (load_checkpoint(best, map_location=self.device)["model"] if best is not None and best.exists()
                 else self.best_state)
        loader, split = ((self.o.test_loader, "test") if self.o.test_loader is not None else
                         (self.val_loader, "validation") if self.val_loader is not None else (None, None))
        epoch = self.state["best_epoch"] if state is not None else self.state["epoch"]
        certificate = certify_selected(
            self.solver, self.model, state, epoch=epoch, averaged=self.state["best_candidate"] == "averaged",
            projected=self.o.selection.deploy == "projected", loader=loader, split=split,
            tolerance=self.o.evaluation.feasibility_tol)
        result.certificate = certificate.as_dict()
        result.deployed_feasible = certificate.holds
        result.violated, result.likely_infeasible = certificate.violated, certificate.likely_infeasible

