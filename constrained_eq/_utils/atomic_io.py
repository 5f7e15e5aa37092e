"""Atomic file writes: a reader never sees a partial file, an interrupted write leaves the old one.

Used by the run folder (:mod:`constrained_eq.training.run_folder`) and by the dataset caches of
:mod:`constrained_eq.data`, which must not import the run layer.

Nothing is ever written through a symbolic link: an atomic write replaces a link by the new file
(:func:`os.replace` replaces the link, it does not follow it), a file opened in place (a lock,
a CSV appended to) is opened with ``O_NOFOLLOW`` (:func:`open_nofollow`), and a folder written into
(``plots/``) is refused when it is a link (:func:`refuse_link`).
"""

from __future__ import annotations

import errno
import io
import os
import stat
import tempfile
from pathlib import Path
from typing import Any

__all__ = ["atomic_write_bytes", "atomic_write_text", "atomic_torch_save", "LinkRefusedError", "refuse_link",
           "open_nofollow", "NotRegularFileError", "require_regular_file"]


class LinkRefusedError(ValueError):
    """A file or folder the project writes is a symbolic link; the one-line message names it and its target."""


def _refused(path: Path) -> LinkRefusedError:
    try:
        target = os.readlink(path)
    except OSError:
        target = "?"
    return LinkRefusedError(f"{path} is a symbolic link (to {target}); refusing to write through it: "
                            "remove the link")


class NotRegularFileError(ValueError):
    """A file the project reads is a FIFO, a device, a socket or a folder: reading it could block forever."""


def require_regular_file(path: str | os.PathLike) -> None:
    """Raise :class:`NotRegularFileError` if ``path`` exists and is not a regular file (after links).

    A FIFO blocks a reader until something writes to it, and ``/dev/zero`` never ends: both are refused
    before they are opened.
    """
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISREG(mode):
        kind = ("a folder" if stat.S_ISDIR(mode) else "a FIFO (named pipe)" if stat.S_ISFIFO(mode)
                else "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "a socket" if stat.S_ISSOCK(mode)
                else "not a regular file")
        raise NotRegularFileError(f"{path} is {kind}, not a regular file; refusing to read it: replace it with the "
                                  "file, or remove it")


def refuse_link(path: str | os.PathLike) -> None:
    """Raise :class:`LinkRefusedError` if ``path`` itself is a symbolic link (a dangling one too)."""
    path = Path(path)
    if path.is_symlink():
        raise _refused(path)


def open_nofollow(path: str | os.PathLike, flags: int, mode: int = 0o644) -> int:
    """``os.open(path, flags | O_NOFOLLOW, mode)``: a descriptor, never one of a link's target.

    Raises:
        LinkRefusedError: If ``path`` is a symbolic link.
    """
    path = Path(path)
    try:
        return os.open(path, flags | getattr(os, "O_NOFOLLOW", 0), mode)
    except OSError as err:
        if err.errno == errno.ELOOP or (err.errno == errno.EEXIST and path.is_symlink()):
            raise _refused(path) from None
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to a temporary file beside ``path`` and move it into place with :func:`os.replace`.

    A reader never sees a partial file, and an interrupted write leaves the old file intact. A
    symbolic link at ``path`` is replaced by the file; its target is never written.
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
    import torch  # here, so that the run folder's and sweeps' plain writes import no torch

    buffer = io.BytesIO()
    torch.save(obj, buffer)
    atomic_write_bytes(path, buffer.getvalue())
