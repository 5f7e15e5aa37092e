"""What ``ceq`` prints: a finished run's summary, the feasibility verdicts, and one line per error.

An error prints one line and an exit status instead of a traceback (``ceq --debug`` shows it).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

__all__ = ["one_line", "print_run", "print_feasibility", "fmt"]


def one_line(err: BaseException, where: str) -> tuple[int, str]:
    """Exit status and one-line message of any error; ``where`` names the file or run folder it concerns.

    Status 2 for a mistake in the input (``ValueError``/``TypeError``, too deep a nesting), 1 for a run
    stopped by a fault (NaN/Inf, diverging duals: the checkpoint is intact), a failed write, memory or a bug.

    Examples:
        >>> one_line(ValueError("Expected 'lr' to be > 0 (got -1)"), "toy.yaml")
        (2, "Expected 'lr' to be > 0 (got -1)")
    """
    text = " ".join(str(err).split())
    if isinstance(err, FloatingPointError):  # NonFiniteError, DivergenceError: training stopped, checkpoint intact
        return 1, f"{where}: training stopped: {text}"
    if isinstance(err, ValueError | TypeError):
        return 2, text
    if isinstance(err, OSError):
        path = err.filename or where
        reason = err.strerror or text
        if _in_data_cache(path):
            return 1, (f"{path}: {reason}; the data cache could not be written or read: set CEQ_CACHE to a "
                       "writable folder with space (default ~/.cache/constrained_eq)")
        return 1, (f"{path}: {reason}; check that the folder exists and is writable and that the disk has space, "
                   "or choose another --out (the last checkpoint is intact)")
    if isinstance(err, MemoryError):
        return 1, (f"{where}: out of memory; lower training.batch_size, the model's width (hidden, ...) or the "
                   "dataset size (n_train, limit, ...)")
    if isinstance(err, RecursionError):
        return 2, f"{where}: nesting too deep ({text}); simplify the file"
    return 1, f"{where}: {type(err).__name__}: {text[:500]}; rerun with --debug for the traceback"


def _in_data_cache(path: object) -> bool:
    """Whether ``path`` lies in the datasets' cache folder (``$CEQ_CACHE`` or ``~/.cache/constrained_eq``)."""
    from constrained_eq.data._common import cache_root

    return Path(os.path.abspath(str(path))).is_relative_to(os.path.abspath(cache_root()))


def fmt(value: Any) -> str:
    """A metric for a summary line: 4 significant digits, ``-`` for a missing one."""
    return f"{value:.4g}" if isinstance(value, float) else ("-" if value is None else str(value))


def print_run(run_dir: Path, summary: dict[str, Any]) -> None:
    """What ``ceq run`` prints of a finished run: the folder, best epoch, selection, test figures, verdicts."""
    print(f"run folder: {run_dir}")
    print(f"strategy {summary['strategy']} (formulation {summary['formulation']}), best epoch {summary['best_epoch']}: "
          + ", ".join(f"{k} {fmt(v)}" for k, v in summary["best"].items()))
    print(f"selected: {summary.get('selection', '')}")
    if summary.get("feasible") is not None:
        test = summary.get("measured_constraints", {}).get("test") or {}
        print(f"feasible on validation: {summary['feasible']}; on test: {test.get('feasible')} "
              f"(tolerance {summary['measured_constraints']['tolerance']:g})")
    for key in ("test", "test_projected"):
        print(f"{key}: " + ", ".join(f"{k} {fmt(v)}" for k, v in summary[key].items()))
    print(f"seconds: {summary['wall_seconds']:.1f}")
    print_feasibility(summary)
    if "distributed" in summary:
        shared = summary["distributed"]
        print(f"ranks agree: max difference of γ, λ, u and weight fingerprints across {shared['world_size']} "
              f"processes = {shared['max_rank_difference']:g}")


def print_feasibility(summary: dict[str, Any]) -> None:
    """Name every constraint the run judged likely infeasible, and the fix (see core.solver.feasibility)."""
    from constrained_eq.core.solver.feasibility import describe

    for line in describe(summary.get("feasibility", {}), summary.get("formulation")):
        print(f"feasibility: {line}")
