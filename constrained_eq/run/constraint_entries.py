"""The entries of a problem file's ``constraints:`` list turned into constraint objects.

An entry is a string such as ``"Equality(target=gammas)"`` (parsed by
:func:`constrained_eq.core.problem.constraints.parse`) or a mapping ``{kind: Equality, target: gammas}``;
``LieDerivative(weight=0.01)`` (CR's penalty, in :mod:`constrained_eq.homotopy`) is written the same way. The checker
(:mod:`constrained_eq.run.problem_file`) and the builder (:mod:`constrained_eq.run.build`) both read the entries
here.
"""

from __future__ import annotations

from typing import Any

from constrained_eq.core.problem import constraints as kinds
from constrained_eq.core.problem import targets as _builtin_targets  # noqa: F401  (registers spectral_norms, … by name)
from constrained_eq.homotopy import LieDerivative

__all__ = ["CONSTRAINT_KINDS", "entry_kind", "parse_entry"]

CONSTRAINT_KINDS = ("Equality", "Inequality", "Resilient", "Penalty", "LieDerivative")


def entry_kind(item: Any) -> Any:
    """The kind an entry names: the mapping's ``kind``, or the string's name before ``(``."""
    return item.get("kind") if isinstance(item, dict) else item.split("(", 1)[0].strip()


def _lie_derivative(item: Any) -> Any:
    """``LieDerivative(key=value, ...)`` from a mapping or a string of keyword arguments.

    The string is read by :func:`constrained_eq.core.problem.constraints.parse_call`, as the other kinds: literals, and
    bare names for ``group`` and ``name`` (``name=lie``).
    """
    if isinstance(item, dict):
        return LieDerivative(**{k: v for k, v in item.items() if k != "kind"})
    _, kwargs = kinds.parse_call(item, ("LieDerivative",), bare=("group", "name"), positional=None)
    return LieDerivative(**kwargs)


def parse_entry(item: Any) -> Any:
    """The constraint (or ``LieDerivative``) an entry describes.

    Raises:
        ValueError, TypeError, SyntaxError: If the entry is not a valid constraint of its kind.
    """
    kind = item["kind"] if isinstance(item, dict) else entry_kind(item)
    if kind == "LieDerivative":
        return _lie_derivative(item)
    if isinstance(item, dict):
        return getattr(kinds, kind)(**{k: v for k, v in item.items() if k != "kind"})
    return kinds.parse(item)
