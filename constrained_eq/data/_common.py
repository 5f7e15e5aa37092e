"""Helpers shared by the dataset loaders: file checks, atomic saves, seeded splits."""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import torch

__all__ = ["require_files", "random_split_indices", "cache_root"]



def cache_root() -> Path:
    """The datasets' cache folder: ``$CEQ_CACHE``, or ``~/.cache/constrained_eq`` when it is unset or empty."""
    return Path(os.environ.get("CEQ_CACHE") or Path.home() / ".cache" / "constrained_eq")


def require_files(folder: str | os.PathLike[str], names: Iterable[str], what: str, hint: str = "") -> Path:
    """Check that every file in ``names`` exists in ``folder``.

    Args:
        folder: Directory that must hold the files.
        names: File names (relative to ``folder``).
        what: Human-readable dataset name used in the error message.
        hint: Extra sentence appended to the error (e.g. where to obtain the files).

    Returns:
        ``folder`` as a :class:`~pathlib.Path`.

    Raises:
        FileNotFoundError: Naming the folder, every expected file and the missing ones.
    """
    folder = Path(folder)
    names = list(names)
    missing = [n for n in names if not (folder / n).is_file()]
    if missing:
        msg = (
            f"{what}: missing file(s) {missing} in folder '{folder}'. "
            f"Put the files {names} into '{folder}'. Nothing is downloaded automatically."
        )
        if hint:
            msg += " " + hint
        raise FileNotFoundError(msg)
    return folder


def random_split_indices(
    n: int, fractions: Sequence[float] = (0.8, 0.1, 0.1), seed: int = 0
) -> dict[str, torch.Tensor]:
    """Shuffle ``range(n)`` with a seeded generator and cut it into train/val/test.

    Args:
        n: Number of samples.
        fractions: Three non-negative fractions summing to 1 (train, val, test).
        seed: Seed of the permutation.

    Returns:
        ``{"train": idx, "val": idx, "test": idx}`` with disjoint ``int64`` index tensors; the
        test part takes the remainder so that all ``n`` indices are used.
    """
    if len(fractions) != 3 or any(f < 0 for f in fractions) or abs(sum(fractions) - 1.0) > 1e-6:
        raise ValueError(f"Expected 'fractions' to be three non-negative numbers summing to 1 (got {fractions})")
    if n < 0:
        raise ValueError(f"Expected 'n' to be >= 0 (got {n})")
    gen = torch.Generator().manual_seed(seed)
    perm = torch.randperm(n, generator=gen)
    n_train = int(round(fractions[0] * n))
    n_val = int(round(fractions[1] * n))
    n_val = min(n_val, n - n_train)
    return {
        "train": perm[:n_train],
        "val": perm[n_train : n_train + n_val],
        "test": perm[n_train + n_val :],
    }

