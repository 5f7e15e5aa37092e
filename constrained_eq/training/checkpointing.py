"""Checkpoints of a run: the files (latest and previous, checksummed) and what ``fit`` keeps in them.

``checkpoint.pt`` holds the solver's state, fit's own state (epoch, best so far, …), the averaged model,
the train loader's ``torch.Generator`` state and the row counts of ``history.csv`` / ``steps.csv``, so
that a resumed run continues exactly where the interrupted one stopped. ``checkpoint.prev.pt`` is the one
before it, the fallback when the latest is damaged; ``checkpoints.json`` lists their SHA-256.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch

from constrained_eq._utils.atomic_io import atomic_write_bytes
from constrained_eq._utils.distributed import is_distributed
from constrained_eq.core.solver.cooper_bridge import NonFiniteError
from constrained_eq.core.solver.engine import Solver
from constrained_eq.training.run_folder import RunFolderError, load_checkpoint, read_json, write_json

__all__ = ["save_checkpoint", "restore_checkpoint", "apply_checkpoint", "loader_generator", "resume_fit",
           "start_fresh", "save_fit_checkpoint", "last_checkpoint_note", "check_finite_state", "problem_hashes",
           "check_problem_hash", "set_sampler_epoch"]


def _previous(path: Path) -> Path:
    return path.with_name(f"{path.stem}.prev{path.suffix}")


def _manifest(path: Path) -> Path:
    return path.with_name(f"{path.stem}s.json")


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def save_checkpoint(obj: Any, path: str | os.PathLike) -> None:
    """Save a checkpoint keeping the one before it: ``path`` → ``<stem>.prev.pt``, each checksummed.

    Order (each step atomic): the SHA-256 of the new bytes joins ``<stem>s.json`` (which keeps the
    last three); the current file becomes the previous one; the new file takes its place. A crash at
    any point leaves files whose checksums are listed, and at least one complete checkpoint.
    """
    path = Path(path)
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    data = buffer.getvalue()
    manifest = _manifest(path)
    try:
        known = list(json.loads(manifest.read_text(encoding="utf-8")).get("sha256", []))
    except (OSError, ValueError, AttributeError):
        known = []
    write_json(manifest, {"sha256": [*known, _sha256(data)][-3:]})
    if path.exists():
        os.replace(path, _previous(path))
    atomic_write_bytes(path, data)


def _verified(path: Path, manifest: Path, map_location: Any) -> Any:
    """Load ``path`` if its SHA-256 is among those ``manifest`` recorded (it lists the previous one too)."""
    if manifest.exists():
        try:
            known = set(json.loads(manifest.read_text(encoding="utf-8")).get("sha256", []))
        except (OSError, ValueError, AttributeError):
            known = None
        if known is not None and _sha256(path.read_bytes()) not in known:
            raise RunFolderError(f"{path}: damaged checkpoint: its SHA-256 is not the one recorded in {manifest} "
                                 "when it was written")
    return load_checkpoint(path, map_location=map_location)


def restore_checkpoint(path: str | os.PathLike, apply: Callable[[Any], None], map_location: Any = None) -> Any:
    """Load the latest checkpoint and ``apply`` it; on any fault fall back to the previous one, with a warning.

    ``apply(checkpoint)`` checks the structure (it raises naming the key) and restores the state. The
    previous checkpoint is tried when the latest is missing, fails its checksum, is not plain data or is
    refused by ``apply``.

    Returns:
        The checkpoint that was applied.

    Raises:
        RunFolderError: If neither checkpoint can be used (the message names both files and why).
    """
    path = Path(path)
    reasons = []
    for candidate in (path, _previous(path)):
        if not candidate.exists():
            reasons.append(f"{candidate}: missing")
            continue
        try:
            checkpoint = _verified(candidate, _manifest(path), map_location)  # one manifest lists both
            apply(checkpoint)
        except (ValueError, KeyError, TypeError, RuntimeError, IndexError, AttributeError) as err:
            text = " ".join(str(err).split())[:400] or type(err).__name__
            reasons.append(text if text.startswith(str(candidate)) else f"{candidate}: {text}")
            continue
        if candidate != path:
            warnings.warn(f"{reasons[0]}; resumed from the previous checkpoint {candidate} instead "
                          f"(end of epoch {checkpoint.get('epoch', '?')})", RuntimeWarning, stacklevel=2)
        return checkpoint
    usable = [r for r in reasons if not r.endswith(": missing")]
    if len(usable) == 1:
        raise RunFolderError(f"{usable[0]}; no other checkpoint to fall back to: start the run again with --overwrite")
    raise RunFolderError("cannot resume from any checkpoint: " + "; ".join(reasons)
                         + "; start the run again with --overwrite")


def loader_generator(loader: Any) -> torch.Generator | None:
    """The train loader's ``torch.Generator`` (its state is checkpointed), or ``None``."""
    generator = getattr(loader, "generator", None)
    return generator if isinstance(generator, torch.Generator) else None


def set_sampler_epoch(loader: Any, epoch: int) -> None:
    """Reshuffle a ``DistributedSampler`` (or any sampler with ``set_epoch``) for ``epoch``."""
    sampler = getattr(loader, "sampler", None)
    if callable(getattr(sampler, "set_epoch", None)):
        sampler.set_epoch(epoch)


_CHECKPOINT_KEYS = {"solver": dict, "epoch": int, "history_rows": int, "steps_rows": int}
_SOLVER_KEYS = ("structure", "model", "cmp", "slacks", "optimizer", "step", "epoch", "rng")


def apply_checkpoint(checkpoint: Any, solver: Solver, generator: torch.Generator | None) -> None:
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


def problem_hashes(run_dir: Path | None) -> tuple[str | None, set[str]]:
    """The SHA-256 of the run folder's problem (``problem.json``) and every one a checkpoint may record.

    A run resumed with ``--allow-change`` records the hash it was changed from (``changes[].from_sha256``);
    checkpoints written before the change carry that one. ``(None, set())`` without ``problem.json``.
    """
    if run_dir is None:
        return None, set()
    stored = read_json(run_dir / "problem.json")
    current = stored.get("sha256") if isinstance(stored.get("sha256"), str) else None
    earlier = {c.get("from_sha256") for c in stored.get("changes", []) if isinstance(c, dict)}
    return current, ({current} | {h for h in earlier if isinstance(h, str)}) if current else set()


def check_problem_hash(checkpoint: Mapping[str, Any], run_dir: Path | None) -> None:
    """Refuse a checkpoint that records another problem's SHA-256 than the run folder's ``problem.json``.

    Checkpoints written before the hash was recorded (no ``problem_sha256``) and folders without
    ``problem.json`` (``fit`` from Python) are not checked.
    """
    recorded = checkpoint.get("problem_sha256")
    current, accepted = problem_hashes(run_dir)
    if recorded is None or current is None or recorded in accepted:
        return
    raise RunFolderError(f"key 'problem_sha256': the checkpoint belongs to another problem (sha256 {recorded}), "
                         f"not to this run folder's problem (sha256 {current} in {run_dir / 'problem.json'})")


def resume_fit(solver: Solver, checkpoint_path: Path | None, generator: torch.Generator | None,
               device: torch.device, state: dict[str, Any], averaged: Any, streams: tuple[Any, Any]) -> None:
    """Restore the latest usable checkpoint into the solver, the loader RNG, fit's ``state`` and the averaged model.

    ``history.csv`` and ``steps.csv`` (``streams``, ``None`` where not written) are cut back to the rows the
    checkpoint had seen, so that the resumed run appends exactly what the uninterrupted one would have.

    Raises:
        ValueError: If there is no checkpoint to resume from.
    """
    if checkpoint_path is None or not any(p.exists() for p in (checkpoint_path, _previous(checkpoint_path))):
        raise ValueError(f"fit: resume=True needs a checkpoint at {checkpoint_path} (found none); "
                         "run without resume=True first")
    run_dir = checkpoint_path.parent

    def apply(checkpoint: Any) -> None:
        if isinstance(checkpoint, dict):
            check_problem_hash(checkpoint, run_dir)
        apply_checkpoint(checkpoint, solver, generator)

    checkpoint = restore_checkpoint(checkpoint_path, apply, map_location=device)
    state.update({k: checkpoint.get(k, state[k]) for k in state})
    if averaged is not None and checkpoint.get("averaged") is not None:
        averaged.load_state_dict(checkpoint["averaged"])
    for stream, rows in zip(streams, ("history_rows", "steps_rows"), strict=True):
        if stream is not None:
            stream.truncate(checkpoint[rows])


def start_fresh(run_dir: Path, checkpoint_path: Path, streams: tuple[Any, Any]) -> None:
    """Refuse a run folder that already holds a checkpoint; empty ``history.csv`` and ``steps.csv``."""
    if checkpoint_path.exists():
        raise ValueError(f"fit: {run_dir} already holds a checkpoint; pass resume=True to continue it or "
                         "choose another run_dir")
    for stream in streams:
        if stream is not None:
            stream.truncate(0)


def save_fit_checkpoint(path: Path, solver: Solver, state: dict[str, Any], averaged: Any,
                        generator: torch.Generator | None, history: Any, steps: Any,
                        problem_sha256: str | None = None) -> None:
    """Write the checkpoint at the end of an epoch (keeping the one before it), with its problem's SHA-256."""
    save_checkpoint({"solver": solver.state_dict(), **state, "problem_sha256": problem_sha256,
                     "averaged": averaged.state_dict() if averaged is not None else None,
                     "loader_rng": generator.get_state() if generator is not None else None,
                     "history_rows": len(history), "steps_rows": len(steps) if steps else 0}, path)


def last_checkpoint_note(checkpoint_path: Path | None, run_dir: Path | None, epoch: int) -> str:
    """One sentence for a fault's message: the last checkpoint is intact (and how to resume), or there is none."""
    if checkpoint_path is None:
        return "No run folder: nothing was saved."
    if checkpoint_path.exists():
        return (f"The last checkpoint {checkpoint_path} (end of epoch {epoch}) is intact; continue "
                "with resume=True (`ceq run <file> --resume`) after the fix, listing what you changed "
                "(`--allow-change optimizer.lr,dual_lr`).")
    return f"No checkpoint was written yet in {run_dir}."


def check_finite_state(model: torch.nn.Module, row: Mapping[str, Any], epoch: int) -> None:
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
