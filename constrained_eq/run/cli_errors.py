"""The CLI's one line per error: the exit status and message ``ceq`` prints instead of a traceback."""

from __future__ import annotations

__all__ = ["one_line"]


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
        return 1, (f"{path}: {reason}; check that the folder exists and is writable and that the disk has space, "
                   "or choose another --out (the last checkpoint is intact)")
    if isinstance(err, MemoryError):
        return 1, (f"{where}: out of memory; lower training.batch_size, the model's width (hidden, ...) or the "
                   "dataset size (n_train, limit, ...)")
    if isinstance(err, RecursionError):
        return 2, f"{where}: nesting too deep ({text}); simplify the file"
    return 1, f"{where}: {type(err).__name__}: {text[:500]}; rerun with --debug for the traceback"
