"""The run folder: its marker and lock, per-epoch/per-step CSV streams, ``metrics.json``, loading checkpoints.

A run folder holds::

    run_dir/
        .ceq-run          marker: this folder is a run folder (only such a folder is ever deleted)
        .lock             OS lock held by the run writing the folder (holds its pid)
        problem.json      normalised problem file (resume refuses a changed one)
        history.csv       one row per epoch, appended as training goes
        steps.csv         one row every N steps (optional)
        checkpoint.pt     solver state + epoch + best metric + loader RNG (atomic)
        checkpoint.prev.pt  the checkpoint before it (the fallback when the latest is damaged)
        checkpoints.json  SHA-256 of the checkpoints written last (a damaged file fails the check)
        best.pt           model state_dict of the best epoch (atomic)
        metrics.json      best/final metrics (and test metrics from ``ceq``)
        plots/*.png       written by :mod:`constrained_eq.run.plots`

The checkpoint files are written and verified by :mod:`constrained_eq.training.checkpointing`; the atomic
writes are :mod:`constrained_eq._utils.atomic_io`'s (re-exported here).
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import re
import shutil
import unicodedata
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from constrained_eq._utils.atomic_io import (
    atomic_write_text,
    open_nofollow,
    refuse_link,
    require_regular_file,
)

__all__ = ["load_checkpoint", "write_json", "read_json", "CsvStream", "read_csv", "run_name", "run_folder",
           "RunLock", "RunFolderError", "MARKER", "is_run_folder", "mark_run_folder", "clear_run_folder",
           "remove_stale_temporaries"]


def load_checkpoint(path: str | os.PathLike, map_location: Any = None) -> Any:
    """Load a checkpoint without ever executing code from it (``torch.load(..., weights_only=True)``).

    Raises ``ValueError`` naming the file if it is missing, damaged, not a regular file or pickles objects.
    """
    path = Path(path)
    require_regular_file(path)
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise ValueError(f"{path}: no such checkpoint") from None
    except Exception as err:  # UnpicklingError, RuntimeError (corrupt zip), EOFError, ...
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ValueError(f"{path}: refusing to load the checkpoint: it is not a plain checkpoint of tensors and "
                         f"numbers (it may be corrupt, or hold pickled objects, which are never executed) "
                         f"({type(err).__name__}: {reason}); delete it and start the run again "
                         "(`ceq run <file> --overwrite`)") from None


def write_json(path: str | os.PathLike, data: Mapping[str, Any]) -> None:
    """Write ``data`` as indented, key-sorted JSON, atomically."""
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")


def read_json(path: str | os.PathLike) -> dict[str, Any]:
    """Read a JSON file written by :func:`write_json` (``{}`` when it does not exist)."""
    path = Path(path)
    if not path.exists():
        return {}
    require_regular_file(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise RunFolderError(f"{path}: damaged run file, not JSON ({type(err).__name__}: {err}); restore it, or "
                             "start the run again with --overwrite") from None
    if not isinstance(data, dict):
        raise RunFolderError(f"{path}: damaged run file: expected a JSON object (got {type(data).__name__}); "
                             "restore it, or start the run again with --overwrite")
    return data


def _format(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(value)
    return str(value)


class CsvStream:
    """Append rows to a CSV file without keeping them in memory.

    The header is fixed by the first row written (or read from an existing file). A row with a
    column the header lacks rewrites the file once with the header extended (earlier rows get empty
    cells), so columns never shift. The number of rows is counted once and then kept up to date, so
    ``len`` (read at every checkpoint) does not re-read a file that grows by a row per step.

    Args:
        path (str or PathLike): The CSV file.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self.columns: list[str] | None = None
        self._rows: int | None = None  # counted on first use
        refuse_link(self.path)  # a link's target is neither read as the header nor appended to
        require_regular_file(self.path)  # nor is a FIFO read (it would block)
        if self.path.exists() and self.path.stat().st_size > 0:
            try:
                with self.path.open(newline="", encoding="utf-8") as handle:
                    self.columns = next(csv.reader(handle), None)
            except (UnicodeDecodeError, csv.Error) as err:
                raise RunFolderError(f"{self.path}: damaged run file ({type(err).__name__}); restore it, or start "
                                     "the run again with --overwrite") from None

    def _read_rows(self) -> list[list[str]]:
        if not self.path.exists():
            return []
        with self.path.open(newline="", encoding="utf-8") as handle:
            return list(csv.reader(handle))[1:]

    def _rewrite(self, columns: list[str], rows: list[list[str]]) -> None:
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(columns)
        writer.writerows(r + [""] * (len(columns) - len(r)) for r in rows)
        atomic_write_text(self.path, buffer.getvalue())
        self.columns = columns
        self._rows = len(rows)

    def append(self, row: Mapping[str, Any]) -> None:
        """Append one row (a mapping column → value); the first row also writes the header."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.columns is None:
            self._rewrite(list(row), [])
        new = [k for k in row if k not in self.columns]
        if new:
            self._rewrite(self.columns + new, self._read_rows())
        count = len(self)
        fd = open_nofollow(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
        with os.fdopen(fd, "a", newline="", encoding="utf-8") as handle:
            csv.writer(handle).writerow([_format(row.get(k)) for k in self.columns])
        self._rows = count + 1

    def __len__(self) -> int:
        """Number of data rows in the file."""
        if self._rows is None:
            if not self.path.exists():
                return 0
            try:
                with self.path.open(newline="", encoding="utf-8") as handle:
                    self._rows = max(sum(1 for _ in csv.reader(handle)) - 1, 0)
            except (UnicodeDecodeError, csv.Error) as err:
                raise RunFolderError(f"{self.path}: damaged run file ({type(err).__name__}); restore it, or start "
                                     "the run again with --overwrite") from None
        return self._rows

    def truncate(self, rows: int) -> None:
        """Keep the header and the first ``rows`` data rows (drop rows written after a checkpoint).

        Raises:
            RunFolderError: If the file holds fewer than ``rows`` rows (deleted or truncated since the
                checkpoint): resuming would lose them silently.
        """
        if rows > 0 and len(self) < rows:
            raise RunFolderError(f"{self.path}: holds {len(self)} rows but the checkpoint was taken after {rows}; "
                                 "it was deleted or truncated since. Restore it, or start the run again with "
                                 "--overwrite")
        if not self.path.exists():
            return
        if rows == 0:
            self.path.unlink()
            self.columns, self._rows = None, 0
            return
        kept = self._read_rows()
        if len(kept) > rows:
            self._rewrite(self.columns, kept[:rows])


def read_csv(path: str | os.PathLike) -> dict[str, list[float]]:
    """Read a CSV written by :class:`CsvStream` into columns of floats (``nan`` for empty cells)."""
    path = Path(path)
    if not path.exists():
        return {}
    require_regular_file(path)
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            rows: Sequence[dict[str, str]] = list(csv.DictReader(handle))
        if not rows:
            return {}
        return {key: [float(r[key]) if r[key] not in ("", None) else float("nan") for r in rows] for key in rows[0]}
    except (UnicodeDecodeError, csv.Error, ValueError, TypeError, KeyError) as err:
        raise RunFolderError(f"{path}: damaged run file ({type(err).__name__}: {err}); restore it, or start the run "
                             "again with --overwrite") from None


# ----------------------------------------------------------------------------- run folders: names, marker, lock
class RunFolderError(ValueError):
    """A run folder (or one of its files) that cannot be used as asked; the message names it."""


MARKER = ".ceq-run"  # written into every run folder; only a folder holding it is ever deleted
LOCK = ".lock"
_UNSAFE = re.compile(r"[^\w.\-]+")  # \w: letters and digits of any script, and '_'


def run_name(file: str | os.PathLike, strategy: str | None = None) -> str:
    """The run folder's name for a problem file: its stem, made safe for a single path component.

    Characters other than letters, digits, ``_``, ``-`` and ``.`` become ``_`` (after Unicode NFC
    normalisation), leading dots are dropped (so ``...yaml`` or ``..yml`` can never name ``..``), an
    empty result becomes ``run`` and the name is cut to 100 characters.
    """
    stem = unicodedata.normalize("NFC", Path(file).stem)
    name = _UNSAFE.sub("_", stem).lstrip(".")[:100] or "run"
    if strategy is not None:
        name = f"{name}-{_UNSAFE.sub('_', strategy)}"
    return name


def run_folder(out: str | os.PathLike, file: str | os.PathLike, strategy: str | None = None) -> Path:
    """``out/<run_name>``, refused unless it resolves (symbolic links followed) to a folder inside ``out``.

    Raises:
        RunFolderError: If the folder would lie outside ``out`` (e.g. it is a link to elsewhere).
    """
    out = Path(out)
    folder = out / run_name(file, strategy)
    parent, resolved = out.resolve(), folder.resolve()
    if resolved.parent != parent:
        raise RunFolderError(f"{folder}: the run folder resolves to {resolved}, outside --out {parent}; "
                             "remove the link or choose another --out")
    return folder


def is_run_folder(folder: str | os.PathLike) -> bool:
    """Whether ``folder`` carries this project's run marker (see :data:`MARKER`)."""
    marker = Path(folder) / MARKER
    return marker.is_file() and not marker.is_symlink()


def mark_run_folder(folder: str | os.PathLike) -> None:
    """Create ``folder`` (and its parents) and write the run marker into it."""
    atomic_write_text(Path(folder) / MARKER, "constrained_eq run folder: `ceq run --overwrite` may delete it\n")


def clear_run_folder(folder: str | os.PathLike) -> None:
    """Delete the contents of a run folder except its lock; refused unless it carries the run marker.

    Symbolic links inside are removed, never followed. The marker is removed last, so that a crash part
    way leaves a folder that is still marked (``--overwrite`` clears it again).

    Raises:
        RunFolderError: If ``folder`` is not a run folder of this project.
    """
    folder = Path(folder)
    if folder.is_symlink() or not is_run_folder(folder):
        raise RunFolderError(f"{folder}: refusing to delete it: it is not a run folder of constrained_eq (no "
                             f"{MARKER} marker in it); choose another --out, or move it away yourself")
    for child in folder.iterdir():
        if child.name in (LOCK, MARKER):
            continue
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child)
        else:
            child.unlink()
    (folder / MARKER).unlink()


_TEMPORARY = re.compile(r"^\..+\.[A-Za-z0-9_]{8}\.tmp$")  # atomic_write_bytes's `.<name>.XXXXXXXX.tmp`


def remove_stale_temporaries(folder: str | os.PathLike) -> list[Path]:
    """Remove the temporary files interrupted atomic writes left (``.checkpoint.pt.ab12cd34.tmp``); under the lock."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    stale = [child for child in folder.iterdir() if _TEMPORARY.match(child.name)
             and (child.is_symlink() or child.is_file())]
    for child in stale:
        child.unlink(missing_ok=True)
    return stale


def _holder(path: Path) -> str:
    try:
        pid = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError):
        pid = ""
    return f"process {pid}" if pid.isdigit() else "another process"


class RunLock:
    """An exclusive OS lock (``fcntl.flock``) on ``folder/.lock``, which holds the holder's pid.

    The lock dies with its process (also under ``kill -9``), so a stale lock file never blocks.

    Args:
        folder (str or PathLike): The run folder.
    """

    _held: dict[Path, int] = {}  # lock files this process holds -> number of holders (re-entrant)

    def __init__(self, folder: str | os.PathLike) -> None:
        self.path = Path(folder) / LOCK
        self._fd: int | None = None
        self._shared = False

    @staticmethod
    def check_free(folder: str | os.PathLike) -> None:
        """Raise :class:`RunFolderError` if a live process holds the lock of ``folder`` (creates nothing)."""
        path = Path(folder) / LOCK
        if not path.is_file():
            return
        lock = RunLock(folder)
        lock.acquire(create=False)
        lock.release()

    def acquire(self, create: bool = True) -> RunLock:
        """Take the lock without waiting; ``create`` makes the folder and the lock file if missing.

        Raises:
            RunFolderError: If another process holds it (naming its pid).
        """
        try:
            import fcntl
        except ImportError:  # pragma: no cover - not POSIX: no lock
            return self
        if create:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        key = self.path.resolve()
        if key in RunLock._held:  # this process holds it already (ceq run -> fit)
            RunLock._held[key] += 1
            self._shared = True
            return self
        try:
            fd = open_nofollow(self.path, os.O_RDWR | (os.O_CREAT if create else 0))
        except FileNotFoundError:
            return self
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise RunFolderError(f"{self.path.parent}: {_holder(self.path)} is running in this run folder "
                                 f"(it holds {self.path}); wait for it to finish, or choose another --out") from None
        if create:
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        RunLock._held[key] = 1
        return self

    def release(self) -> None:
        """Release the lock (the lock file stays; a later run takes it over)."""
        key = self.path.resolve()
        if self._shared or self._fd is not None:
            RunLock._held[key] = RunLock._held.get(key, 1) - 1
            if RunLock._held[key] <= 0:
                RunLock._held.pop(key, None)
        self._shared = False
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __del__(self) -> None:
        with contextlib.suppress(Exception):  # at interpreter exit the OS closes the descriptor anyway
            self.release()

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc: Any) -> None:
        self.release()


# ----------------------------------------------------------------------------- checkpoints: two kept, checksummed
@contextlib.contextmanager
def locked(folder: str | os.PathLike | None) -> Iterator[RunLock | None]:
    """Hold :class:`RunLock` on ``folder`` for the block (nothing when ``folder`` is ``None``)."""
    if folder is None:
        yield None
        return
    lock = RunLock(folder).acquire()
    try:
        yield lock
    finally:
        lock.release()
