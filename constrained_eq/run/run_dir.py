"""Opening the run folder of a problem: ``--resume``, ``--overwrite`` and ``--allow-change`` checked first.

Nothing is written before the build succeeds: :func:`check_run_dir` refuses a folder that cannot be
used as asked; :func:`open_run_dir` then takes the folder's lock, checks again under it, clears it
(only a marked run folder) and writes the marker and ``problem.json`` (with every change a resume was
allowed). The folder's files themselves are :mod:`constrained_eq.training.run_folder`'s.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from constrained_eq.core.solver.engine import Solver
from constrained_eq.run.build import fail
from constrained_eq.run.problem_file import LOCATION_KEYS, problem_hash
from constrained_eq.run.problem_model import Problem
from constrained_eq.training.run_folder import (
    LOCK,
    MARKER,
    RunLock,
    clear_run_folder,
    is_run_folder,
    mark_run_folder,
    read_json,
    remove_stale_temporaries,
    write_json,
)

__all__ = ["ALLOWED_CHANGES", "check_run_dir", "open_run_dir", "keep_file_hyperparameters"]


# keys that may change on resume with --allow-change: how the run goes on, not what the problem is
ALLOWED_CHANGES = ("training.epochs", "training.on_nonfinite", "training.log_every", "training.eval_every",
                   "training.checkpoint_every", "training.steps_every", "optimizer.lr", "optimizer.weight_decay",
                   "dual_lr", "variable_lr", "training.compile")


def _differences(old: Any, new: Any, prefix: str = "") -> list[str]:
    if isinstance(old, dict) and isinstance(new, dict):
        return [d for k in sorted(set(old) | set(new), key=str)
                for d in _differences(old.get(k), new.get(k), f"{prefix}.{k}" if prefix else str(k))]
    return [] if old == new else [f"{prefix}: {old!r} -> {new!r}"]


def check_run_dir(problem: Problem, run_dir: Path, resume: bool, overwrite: bool,
                   allow_change: tuple[str, ...] = ()) -> list[str]:
    """Refuse a run folder that cannot be used as asked, writing nothing; returns the allowed changes.

    A folder that exists, is not empty and lacks the run marker is never written to (nor deleted);
    ``--overwrite`` deletes only a run folder, and never one another process holds (its lock).
    """
    if run_dir.exists() and not run_dir.is_dir():
        raise fail(problem, None, f"{run_dir} is a file, not a run folder; choose another --out")
    RunLock.check_free(run_dir)
    contents = [p.name for p in run_dir.iterdir() if p.name != LOCK] if run_dir.is_dir() else []
    has_run = any(name in contents for name in ("checkpoint.pt", "checkpoint.prev.pt", "problem.json"))
    if contents and not has_run and not is_run_folder(run_dir):
        raise fail(problem, None, f"{run_dir} exists and is not a run folder of constrained_eq (no {MARKER} marker); "
                               "refusing to write into it: choose another --out")
    if resume:
        if not any((run_dir / name).exists() for name in ("checkpoint.pt", "checkpoint.prev.pt")):
            raise fail(problem, None, f"cannot resume: {run_dir} holds no checkpoint.pt; run without --resume first "
                                   "(with --overwrite if the folder exists)")
        stored = read_json(run_dir / "problem.json")
        spec = problem.to_spec()
        if stored.get("sha256") != problem_hash(spec):
            changes = _differences(stored.get("problem", {}), {k: v for k, v in spec.items()
                                                               if k not in LOCATION_KEYS})
            refused = [c for c in changes if c.split(":", 1)[0] not in allow_change]
            if refused or not changes:
                hint = (f"; these can be changed with --allow-change: {', '.join(ALLOWED_CHANGES)}"
                        if refused and all(c.split(':', 1)[0] in ALLOWED_CHANGES for c in refused) else "")
                raise fail(problem, None, f"refusing to resume {run_dir}: the problem changed since the run started "
                                       f"({'; '.join(refused[:5]) or 'content differs'}); restore the file or start "
                                       f"a new run with another --out{hint}")
            return changes
        return []
    if has_run and not overwrite:
        raise fail(problem, None, f"{run_dir} already holds a run; pass --resume to continue it, --overwrite to "
                               "start it again, or choose another --out")
    if has_run and not is_run_folder(run_dir):
        raise fail(problem, None, f"{run_dir}: refusing to delete it: it is not a run folder of constrained_eq (no "
                               f"{MARKER} marker in it); choose another --out, or move it away yourself")
    return []


def keep_file_hyperparameters(solver: Solver) -> None:
    """After a resume, keep the learning rates and weight decays of the file, not those of the checkpoint.

    ``load_state_dict`` of a torch optimizer restores its param groups' hyperparameters; a resume
    with ``--allow-change optimizer.lr`` (or ``dual_lr``, ...) sets them back to the file's values.
    """
    optimizers = [*solver.optimizer.primal_optimizers, *getattr(solver.optimizer, "dual_optimizers", [])]
    fresh = [[{k: g[k] for k in ("lr", "weight_decay") if k in g} for g in opt.param_groups] for opt in optimizers]
    load = solver.load_state_dict

    def load_then_keep(state: dict[str, Any]) -> None:
        load(state)
        for opt, groups in zip(optimizers, fresh, strict=True):
            for group, values in zip(opt.param_groups, groups, strict=True):
                group.update(values)

    solver.load_state_dict = load_then_keep  # type: ignore[method-assign]


def open_run_dir(problem: Problem, run_dir: Path, resume: bool, overwrite: bool,
                  allow_change: tuple[str, ...] = ()) -> RunLock:
    """Lock the run folder, check it again under the lock, clear it (``--overwrite``), write marker and problem.json.

    Temporary files an interrupted atomic write left (``.checkpoint.pt.*.tmp``) are removed first.
    """
    lock = RunLock(run_dir).acquire()
    try:
        changes = check_run_dir(problem, run_dir, resume, overwrite, allow_change)
        spec = problem.to_spec()  # what problem.json stores and hashes
        remove_stale_temporaries(run_dir)  # `.checkpoint.pt.*.tmp` of a write a crash interrupted
        problem = {k: v for k, v in spec.items() if k not in LOCATION_KEYS}
        if resume:
            if changes:  # the run records every change it was resumed with
                stored = read_json(run_dir / "problem.json")
                history = [*stored.get("changes", []), {"changes": changes, "from_sha256": stored.get("sha256")}]
                write_json(run_dir / "problem.json", {"sha256": problem_hash(spec), "problem": problem,
                                                      "changes": history})
            return lock
        if overwrite and is_run_folder(run_dir):
            clear_run_folder(run_dir)
        mark_run_folder(run_dir)
        write_json(run_dir / "problem.json", {"sha256": problem_hash(spec), "problem": problem})
    except BaseException:
        lock.release()
        raise
    return lock

