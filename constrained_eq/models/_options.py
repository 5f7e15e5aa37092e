"""Checks of the models' constructor options, with the project's error messages."""

from __future__ import annotations


def check_positive_ints(**values: object) -> None:
    """Raise ``ValueError`` naming the first option that is not an int ≥ 1 (``bool`` is rejected)."""
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"Expected '{name}' to be a positive int (got {value!r})")
