"""The run folder: atomic writes, per-epoch/per-step CSV streams and ``metrics.json``.

A run folder holds::

    run_dir/
        problem.json      normalised problem file (resume refuses a changed one)
        history.csv       one row per epoch, appended as training goes
        steps.csv         one row every N steps (optional)
        checkpoint.pt     solver state + epoch + best metric + loader RNG (atomic)
        best.pt           model state_dict of the best epoch (atomic)
        metrics.json      best/final metrics (and test metrics from ``ceq``)
        plots/*.png       written by :mod:`constrained_eq.plots`
"""

from __future__ import annotations

import csv
import io
import json
import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

__all__ = ["atomic_write_bytes", "atomic_write_text", "atomic_torch_save", "load_checkpoint", "write_json",
           "read_json", "CsvStream", "read_csv"]


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to a temporary file beside ``path`` and move it into place with :func:`os.replace`.

    A reader never sees a partial file, and an interrupted write leaves the old file intact.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` (UTF-8) atomically, see :func:`atomic_write_bytes`."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> None:
    """``torch.save`` ``obj`` atomically (temporary file + :func:`os.replace`)."""
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def load_checkpoint(path: str | os.PathLike, map_location: Any = None) -> Any:
    """Load a checkpoint written by :func:`atomic_torch_save` without ever executing code from it.

    Uses ``torch.load(..., weights_only=True)``: only tensors, numbers, strings and containers are
    accepted; a file that pickles any other object is refused.

    Raises:
        ValueError: If the file is not a readable checkpoint or holds something other than plain data
            (the message names the file).
    """
    path = Path(path)
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
    return json.loads(path.read_text(encoding="utf-8"))


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
        if self.path.exists() and self.path.stat().st_size > 0:
            with self.path.open(newline="", encoding="utf-8") as handle:
                self.columns = next(csv.reader(handle), None)

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
        with self.path.open("a", newline="", encoding="utf-8") as handle:
            csv.writer(handle).writerow([_format(row.get(k)) for k in self.columns])
        self._rows = count + 1

    def __len__(self) -> int:
        """Number of data rows in the file."""
        if self._rows is None:
            if not self.path.exists():
                return 0
            with self.path.open(newline="", encoding="utf-8") as handle:
                self._rows = max(sum(1 for _ in csv.reader(handle)) - 1, 0)
        return self._rows

    def truncate(self, rows: int) -> None:
        """Keep the header and the first ``rows`` data rows (drop rows written after a checkpoint)."""
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
    with path.open(newline="", encoding="utf-8") as handle:
        rows: Sequence[dict[str, str]] = list(csv.DictReader(handle))
    if not rows:
        return {}
    return {key: [float(r[key]) if r[key] not in ("", None) else float("nan") for r in rows] for key in rows[0]}
