"""Run a checked problem file (see :mod:`constrained_eq.run.problem_file`) end to end.

:func:`run_problem` checks the run folder, builds the objects (:mod:`constrained_eq.run.build`),
opens the folder (:mod:`constrained_eq.run.run_dir`), trains with :func:`~constrained_eq.training.loop.fit`,
tests the selected model projected and not (:mod:`constrained_eq.run.evaluate`) and writes the
reports.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from constrained_eq._utils import distributed
from constrained_eq._utils.atomic_io import atomic_write_text
from constrained_eq.homotopy import homotopic_layers
from constrained_eq.run.build import Built, as_problem, build, fail, line_of
from constrained_eq.run.evaluate import split_evaluator, test_summary
from constrained_eq.run.plots import plot_run
from constrained_eq.run.problem_model import Problem
from constrained_eq.run.run_dir import check_run_dir, keep_file_hyperparameters, open_run_dir
from constrained_eq.run.selection import objective_column, selection_column, selection_mode
from constrained_eq.run.strategies import get_strategy
from constrained_eq.run.tracking import TensorBoardLog, require_tensorboard
from constrained_eq.tasks import Task, projected
from constrained_eq.training.certificate import certify
from constrained_eq.training.loop import fit
from constrained_eq.training.run_folder import RunLock, load_checkpoint, read_json, write_json
from constrained_eq.training.settings import Averaging, Evaluation, Logging, Selection

__all__ = ["run_problem", "write_constraint_report", "write_symmetry_report"]


def _check_world_size(problem: Problem, context: distributed.Context | None) -> None:
    batch_size = problem.training.batch_size
    if context is not None and batch_size % context.world_size:
        raise fail(problem, line_of(problem, "training.batch_size"),
                   f"Expected 'training.batch_size' ({batch_size}) to be a multiple of the number of processes "
                   f"({context.world_size}): it is the global batch, split evenly across ranks")


def _rank_agreement(built: Built, context: distributed.Context | None) -> dict[str, Any] | None:
    """World size and the largest difference between ranks of γ, λ, u and the weights' fingerprints (a collective).

    γ, λ and u are compared entry by entry; the weights θ through per-tensor (Σθ, Σθ²), so that a large
    model is not gathered whole.
    """
    if context is None:
        return None
    solver = built.solver
    tensors = [distributed.fingerprint(list(built.model.parameters())), *solver.variables,
               *solver.multipliers().values(), *solver.slacks.values()]
    return {"world_size": context.world_size, "backend": context.backend,
            "max_rank_difference": distributed.max_rank_difference(tensors)}


def run_problem(problem: Problem | Mapping[str, Any], run_dir: str | Path, *, resume: bool = False,
                overwrite: bool = False, device: str = "cpu", progress: bool = True,
                context: distributed.Context | None = None,
                allow_change: tuple[str, ...] = (), on_summary: Callable[[dict[str, Any]], None] | None = None
                ) -> dict[str, Any]:
    """Build and train a problem into ``run_dir``, then test the best model, projected and not.

    Under ``torchrun`` pass the ``context`` of :func:`constrained_eq._utils.distributed.init_from_env`: every
    rank trains its share of each global batch, rank 0 alone writes the run folder and tests, and
    ``metrics.json`` records ``distributed.max_rank_difference`` (0.0 when all ranks hold the same
    θ, γ, λ and u, as they should).

    Nothing is written before the build succeeds; then the run folder is locked (a second writer is
    refused naming the holder's pid), marked as a run folder and, with ``overwrite``, cleared (only a
    folder carrying the marker). ``allow_change`` lists the dotted keys (among :data:`ALLOWED_CHANGES`)
    that may differ from the stored problem on ``resume``; each such resume is recorded in problem.json.
    ``on_summary(summary)`` is called once the summary is written and before the plots are drawn (~1 s), so
    a caller can show the results first.

    Returns:
        dict: The run's ``metrics.json`` content (best/final validation metrics, ``test``,
        ``test_projected``, ``seconds``, ``strategy``, ``formulation``); on ranks other than 0, an empty dict.
    """
    run_dir = Path(run_dir)
    problem = as_problem(problem)  # a typed Problem, or the normalised dict of load_problem_file
    _check_world_size(problem, context)
    tensorboard = _check_tensorboard(problem)
    changes = distributed.on_main(lambda: check_run_dir(problem, run_dir, resume, overwrite, allow_change))
    began = time.perf_counter()
    before = distributed.on_main(lambda: read_json(run_dir / "metrics.json") if resume else {}) or {}
    built = build(problem, device, context)
    if changes:
        keep_file_hyperparameters(built.solver)
    held: list[RunLock] = []  # rank 0's lock on the run folder, taken once the build succeeded
    distributed.on_main(lambda: held.append(open_run_dir(problem, run_dir, resume, overwrite, allow_change)))
    log = TensorBoardLog(run_dir, built.model) if tensorboard and distributed.is_main_process() else None
    relaxed = problem.evaluation.project and any(True for _ in homotopic_layers(built.model))
    evaluate = split_evaluator(built.task, problem.evaluation.equivariance_error, relaxed)
    _train(problem, built, run_dir, evaluate, relaxed, log, resume=resume, progress=progress)
    agreement = _rank_agreement(built, context)
    if not distributed.is_main_process():
        return {}
    summary = _test(problem, built, run_dir, evaluate, relaxed, device)
    summary["wall_seconds"] = time.perf_counter() - began
    if "wall_seconds" in before and before.get("epochs") == summary.get("epochs"):
        summary["wall_seconds"] = before["wall_seconds"]  # a resume of a finished run trained nothing: keep its time
    if agreement is not None:
        summary["distributed"] = agreement
    write_json(run_dir / "metrics.json", summary)
    write_constraint_report(run_dir)
    write_symmetry_report(run_dir)
    if log is not None:
        log.close(problem, summary)
    if on_summary is not None:
        on_summary(summary)
    plot_run(run_dir)
    for lock in held:
        lock.release()
    return summary


def _train(problem: Problem, built: Built, run_dir: Path, evaluate: Any, relaxed: bool,
           log: TensorBoardLog | None, *, resume: bool, progress: bool) -> None:
    """``fit`` with the file's training and evaluation settings; each epoch ends in the schedules and the log."""
    training = problem.training
    fit(built.solver, built.train_loader, built.val_loader, epochs=training.epochs, run_dir=run_dir, resume=resume,
        checkpoint_every=training.checkpoint_every, progress=progress,
        evaluation=Evaluation(every=training.eval_every, evaluate=evaluate,
                              feasibility_tol=problem.evaluation.feasibility_tol),
        selection=Selection(column=selection_column(problem, relaxed, built.solver),
                            mode=selection_mode(problem, relaxed, built.task),
                            objective=objective_column(problem, relaxed)),
        averaging=Averaging(kind=training.averaging, start=training.average_start, ema_decay=training.ema_decay),
        logging=Logging(every=training.log_every, steps_every=training.steps_every),
        callbacks=[*built.callbacks, *([log] if log is not None else [])])  # plots: drawn once the summary is out


def _test(problem: Problem, built: Built, run_dir: Path, evaluate: Any, relaxed: bool,
          device: str) -> dict[str, Any]:
    """``metrics.json`` with the selected model (``best.pt``) tested, projected and not, and the run's names."""
    if (run_dir / "best.pt").exists():
        best = load_checkpoint(run_dir / "best.pt", map_location=device)
        built.model.load_state_dict(best["model"])
    summary = read_json(run_dir / "metrics.json")
    test, verdict, test_projected = test_summary(evaluate, built.solver, built.model, built.test_loader, relaxed,
                                                 problem.evaluation.feasibility_tol)
    summary["test"] = test
    summary["measured_constraints"]["test"] = verdict
    summary["test_projected"] = test_projected
    summary["certificate"] = _certificate(problem, built, summary, relaxed)
    summary.update(strategy=problem.strategy, formulation=built.formulation,
                   formulation_options=built.solver.formulation.options(), file=problem.source.file,
                   metric=built.task.metric_name if type(built.task).metric is not Task.metric else "loss")
    return summary


def _certificate(problem: Problem, built: Built, summary: Mapping[str, Any], relaxed: bool) -> dict[str, Any]:
    """Every constraint measured exactly on the deployed model (projected when the strategy deploys f_θ,0)."""
    model = built.model
    deploys = relaxed and get_strategy(problem.strategy).deploys_projection
    deployed = projected(model) if deploys else model
    candidate = summary.get("selected") or "iterate"
    which = "averaged model" if candidate == "averaged" else "iterate"
    words = f"selected {which} of epoch {summary.get('best_epoch')}" + (", projected" if deploys else "")
    return certify(built.solver, deployed, built.test_loader, tolerance=problem.evaluation.feasibility_tol,
                   split="test", deployed=words, relaxed_model=model if deploys else None,
                   verdicts=built.solver.feasibility()).as_dict()


def write_constraint_report(run_dir: str | Path) -> str | None:
    """Write ``constraint_report.txt`` (every constraint by name, its violations and verdicts) if there are any."""
    from constrained_eq.run.report import constraint_report

    run_dir = Path(run_dir)
    if not read_json(run_dir / "metrics.json").get("structure", {}).get("constraints"):
        return None
    text = constraint_report(run_dir)
    atomic_write_text(run_dir / "constraint_report.txt", text + "\n")  # replaces a link, never follows it
    return text


def _check_tensorboard(problem: Problem) -> bool:
    """Whether the run logs to TensorBoard; refuses ``logging.tensorboard: true`` without the package."""
    if not problem.logging.tensorboard:
        return False
    try:
        require_tensorboard()
    except ImportError as err:
        raise fail(problem, line_of(problem, "logging.tensorboard"), str(err)) from None
    return True


def write_symmetry_report(run_dir: str | Path) -> Any:
    """Write ``symmetry_report.json``/``.txt`` (per-layer γ, λ, u, signatures) if the run has homotopy constraints.

    ρ is the run's own (``metrics.json``), so a resilient run with ``rho: 0.5`` is reported and KKT-checked at 0.5.
    """
    from constrained_eq.run.report import symmetry_report

    run_dir = Path(run_dir)
    try:
        report = symmetry_report(run_dir)
    except ValueError:  # a run without per-layer γ (vanilla): nothing to report
        return None
    write_json(run_dir / "symmetry_report.json", json.loads(report.to_json()))
    atomic_write_text(run_dir / "symmetry_report.txt", str(report) + "\n")
    return report
