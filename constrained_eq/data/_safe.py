"""Loading dataset caches without ever running code from them.

A ``.pt`` file is a pickle: unpickling one that pickles a callable runs it. PyG's loaders read their
caches with ``torch.load(weights_only=True)`` but fall back to ``weights_only=False`` when that fails
(``torch_geometric.io.fs.torch_load``), and read ``processed/pre_transform.pt``/``pre_filter.pt``
with ``weights_only=False`` outright. :func:`no_code_from_files` closes both doors while a dataset is
opened: every ``torch.load`` is forced to ``weights_only=True`` (tensors, numbers, strings, containers
and the PyG data classes PyG allow-lists) and a file that holds anything else is refused with
:class:`UnsafeFileError` naming it, instead of being unpickled.
"""

from __future__ import annotations

import contextlib
import os
import pickle
from collections.abc import Iterator
from typing import Any

import torch

__all__ = ["UnsafeFileError", "no_code_from_files", "safe_torch_load"]


class UnsafeFileError(ValueError):
    """A dataset file that is not plain data (or is corrupt); it was not unpickled."""

    def __init__(self, path: str | os.PathLike, reason: str) -> None:
        self.path, self.reason = str(path), reason
        super().__init__(f"{self.path}: refusing to load this dataset file: it is not plain data (tensors, numbers, "
                         f"strings) or it is corrupt ({reason}); nothing in it was run. Delete it so that it is "
                         "built again from the raw files")

    def __reduce__(self) -> tuple:
        return type(self), (self.path, self.reason)


_torch_load = torch.load  # the real one, whatever the context manager does to ``torch.load``


def _name(file: Any) -> str:
    return str(getattr(file, "path", None) or getattr(file, "name", None) or file)


def safe_torch_load(file: Any, map_location: Any = None, *args: Any, **kwargs: Any) -> Any:
    """``torch.load(file, weights_only=True)``; any failure becomes :class:`UnsafeFileError`.

    Positional and keyword arguments other than ``weights_only`` are passed on; ``weights_only`` is
    always ``True`` whatever the caller asked for.
    """
    kwargs.pop("weights_only", None)
    try:
        return _torch_load(file, map_location, *args, weights_only=True, **kwargs)
    except FileNotFoundError:
        raise
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, TypeError, AttributeError,
            KeyError, IndexError, OSError) as err:
        text = str(err).strip()
        reason = f"{type(err).__name__}: {text.splitlines()[0][:200]}" if text else type(err).__name__
        raise UnsafeFileError(_name(file), reason) from None


@contextlib.contextmanager
def no_code_from_files() -> Iterator[None]:
    """Within the block, ``torch.load`` never unpickles code (see the module docstring).

    Restores the previous ``torch.load`` on exit, also after an error.
    """
    previous = torch.load
    torch.load = safe_torch_load  # type: ignore[assignment]
    try:
        yield
    finally:
        torch.load = previous  # type: ignore[assignment]
