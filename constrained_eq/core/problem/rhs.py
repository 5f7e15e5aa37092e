"""Numbers of constraint specs: finite checks and right-hand sides (a number, or one per entry)."""

from __future__ import annotations

import math
from typing import Any

import torch

from constrained_eq._utils.checks import is_real

RightHandSide = float | tuple[float, ...]


def check_rhs(value: Any, field_name: str, owner: str) -> RightHandSide:
    """A right-hand side as a float or a tuple of floats (one per entry), every one finite."""
    if isinstance(value, torch.Tensor):
        if value.dim() > 1:
            raise ValueError(f"{owner}: expected '{field_name}' to be a number or a 1-D list of numbers "
                             f"(got a tensor of shape {tuple(value.shape)})")
        value = value.tolist()
    elif hasattr(value, "tolist") and not isinstance(value, int | float):  # numpy arrays and scalars
        value = value.tolist()
    if isinstance(value, list | tuple):
        if not value:
            raise ValueError(f"{owner}: expected '{field_name}' to be a number or a non-empty list of numbers (got [])")
        entries = tuple(check_finite_number(v, f"{field_name}[{i}]", owner, positive=False, allow_zero=True)
                        for i, v in enumerate(value))
        return entries
    return check_finite_number(value, field_name, owner, positive=False, allow_zero=True)


def rhs_tensor(rhs: RightHandSide, like: torch.Tensor) -> torch.Tensor | float:
    """``rhs`` as something to subtract from ``like`` (a float stays a float: no tensor, no copy)."""
    if isinstance(rhs, float):
        return rhs
    return torch.tensor(rhs, dtype=like.dtype, device=like.device)


def rhs_size(rhs: RightHandSide | None) -> int | None:
    """The number of entries of a per-entry right-hand side (``None`` for a single number)."""
    return len(rhs) if isinstance(rhs, tuple) else None


def check_finite_number(value: Any, field_name: str, owner: str, *, positive: bool, allow_zero: bool) -> float:
    """``value`` as a finite float, ``≥ 0`` (or ``> 0``) if ``positive``; errors name ``owner``."""
    if not is_real(value):
        raise TypeError(f"{owner}: expected '{field_name}' to be a number (got {type(value).__name__})")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{owner}: expected '{field_name}' to be finite (got {value})")
    if positive and (value < 0 or (value == 0 and not allow_zero)):
        bound = "≥ 0" if allow_zero else "> 0"
        raise ValueError(f"{owner}: expected '{field_name}' to be {bound} (got {value})")
    return value
