"""The one place for checks of numbers: ``Expected 'x' to be a finite number > 0 (got …)``.

Every layer checks its numeric settings here, so that a refused value always reads the same way:
``<owner>: expected '<name>' to be <what> (got <value!r>)`` — or ``Expected '<name>' …`` without an
owner. ``bool`` is never a number (``True`` is an ``int`` in Python, never a valid size or step).
"""

from __future__ import annotations

import math
from typing import Any

__all__ = ["is_int", "is_real", "is_number", "expected", "check_number", "check_int"]


def is_int(value: Any) -> bool:
    """An ``int`` that is not a ``bool``."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_real(value: Any) -> bool:
    """An ``int`` or ``float`` that is not a ``bool`` (finite or not)."""
    return isinstance(value, int | float) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    """A finite ``int`` or ``float`` that is not a ``bool``."""
    return is_real(value) and math.isfinite(value)


def expected(name: str, what: str, value: Any, owner: str | None = None) -> str:
    """The message ``<owner>: expected '<name>' to be <what> (got <value!r>)`` (``Expected …`` without owner)."""
    start = f"{owner}: expected" if owner else "Expected"
    return f"{start} '{name}' to be {what} (got {value!r})"


def check_number(value: Any, name: str, owner: str | None = None, *, above: float | None = None,
                 at_least: float | None = None, below: float | None = None) -> float:
    """``value`` as a float if it is a finite number with ``value > above``, ``≥ at_least`` and ``< below``.

    The bounds are printed as given (``above=0`` reads ``> 0``, ``at_least=0.0`` reads ``≥ 0.0``).

    Raises:
        ValueError: ``<owner>: expected '<name>' to be a finite number > 0 (got …)``.
    """
    ok = is_number(value) and (above is None or value > above) and (at_least is None or value >= at_least) \
        and (below is None or value < below)
    if not ok:
        bounds = [f"> {above}" if above is not None else "", f"≥ {at_least}" if at_least is not None else "",
                  f"< {below}" if below is not None else ""]
        what = " ".join(["a finite number", " and ".join(b for b in bounds if b)]).strip()
        raise ValueError(expected(name, what, value, owner))
    return float(value)


def check_int(value: Any, name: str, owner: str | None = None, *, at_least: int = 1, allow_none: bool = False,
              what: str | None = None) -> int | None:
    """``value`` if it is an integer ≥ ``at_least`` (or ``None`` with ``allow_none``).

    Raises:
        ValueError: ``<owner>: expected '<name>' to be an integer ≥ 1 (got …)`` (``what`` replaces
            ``an integer ≥ 1``).
    """
    if allow_none and value is None:
        return None
    if not is_int(value) or value < at_least:
        what = what or f"an integer ≥ {at_least}"
        raise ValueError(expected(name, what + (" or None" if allow_none else ""), value, owner))
    return value
