"""Checks of the models' constructor options, with the project's error messages."""

from __future__ import annotations

from constrained_eq._utils.checks import check_int


def check_positive_ints(**values: object) -> None:
    """Raise ``ValueError`` naming the first option that is not an int ≥ 1 (``bool`` is rejected)."""
    for name, value in values.items():
        check_int(value, name, what="a positive int")
