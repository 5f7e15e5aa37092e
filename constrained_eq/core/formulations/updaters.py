"""Penalty-coefficient updaters by name: Cooper's multiplicative and additive rules.

After every step, each entry i of a constraint whose violation exceeds the tolerance gets a larger
coefficient (for inequalities the violation is ``[g_i − b_i]₊``):

.. math::
    c_i \\leftarrow \\begin{cases} \\beta\\, c_i & \\text{multiplicative (growth factor } \\beta > 1) \\\\
    c_i + \\delta & \\text{additive (increment } \\delta > 0) \\end{cases}
    \\quad \\text{if } |v_i| > \\text{tol},

and with ``has_restart`` an inequality entry that is satisfied (v_i ≤ 0) returns to its initial
coefficient. These are :class:`cooper.penalty_coefficients.MultiplicativePenaltyCoefficientUpdater`
and :class:`~cooper.penalty_coefficients.AdditivePenaltyCoefficientUpdater`; this module only names
them, checks their options and prints them back.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any, ClassVar

import cooper

from constrained_eq._utils.checks import check_number

__all__ = ["PenaltyUpdater", "MultiplicativeUpdater", "AdditiveUpdater", "UPDATERS", "resolve_penalty_updater"]


@dataclass(frozen=True)
class PenaltyUpdater:
    """Base of the named updaters: a small value that builds Cooper's updater.

    Attributes:
        violation_tolerance: Entries whose violation is at most this are left alone (≥ 0).
        has_restart: Reset a satisfied inequality entry to its initial coefficient.
    """

    name: ClassVar[str]
    violation_tolerance: float = 1e-4
    has_restart: bool = True

    def __post_init__(self) -> None:
        owner = f"'penalty_updater' of kind {self.name!r}"
        tolerance = check_number(self.violation_tolerance, "violation_tolerance", owner, at_least=0)
        object.__setattr__(self, "violation_tolerance", tolerance)
        if not isinstance(self.has_restart, bool):
            raise ValueError(f"{owner}: expected 'has_restart' to be true or false (got {self.has_restart!r})")

    def build(self) -> cooper.penalty_coefficients.PenaltyCoefficientUpdater:
        """Cooper's updater with these options."""
        raise NotImplementedError

    def as_dict(self) -> dict[str, Any]:
        """The problem-file form: ``{"name": ..., <options>}``."""
        return {"name": self.name, **{f.name: getattr(self, f.name) for f in fields(self)}}

    def __repr__(self) -> str:
        return repr(self.as_dict())


@dataclass(frozen=True, repr=False)
class MultiplicativeUpdater(PenaltyUpdater):
    """c ← β c on violated entries (Nocedal & Wright, Alg. 17.4). ``growth_factor`` β > 1."""

    name: ClassVar[str] = "multiplicative"
    growth_factor: float = 1.01

    def __post_init__(self) -> None:
        super().__post_init__()
        owner = f"'penalty_updater' of kind {self.name!r}"
        object.__setattr__(self, "growth_factor", check_number(self.growth_factor, "growth_factor", owner, above=1))

    def build(self) -> cooper.penalty_coefficients.PenaltyCoefficientUpdater:
        return cooper.penalty_coefficients.MultiplicativePenaltyCoefficientUpdater(
            growth_factor=self.growth_factor, violation_tolerance=self.violation_tolerance,
            has_restart=self.has_restart)


@dataclass(frozen=True, repr=False)
class AdditiveUpdater(PenaltyUpdater):
    """c ← c + δ on violated entries. ``increment`` δ > 0."""

    name: ClassVar[str] = "additive"
    increment: float = 1.0

    def __post_init__(self) -> None:
        super().__post_init__()
        owner = f"'penalty_updater' of kind {self.name!r}"
        object.__setattr__(self, "increment", check_number(self.increment, "increment", owner, above=0))

    def build(self) -> cooper.penalty_coefficients.PenaltyCoefficientUpdater:
        return cooper.penalty_coefficients.AdditivePenaltyCoefficientUpdater(
            increment=self.increment, violation_tolerance=self.violation_tolerance, has_restart=self.has_restart)


UPDATERS: dict[str, type[PenaltyUpdater]] = {cls.name: cls for cls in (MultiplicativeUpdater, AdditiveUpdater)}


def resolve_penalty_updater(spec: Any) -> PenaltyUpdater | None:
    """An updater from ``None``, a name, a mapping ``{"name": ..., <options>}`` or an instance.

    Raises:
        ValueError: On an unknown name or option (the message lists the choices).

    Examples:
        >>> resolve_penalty_updater({"name": "multiplicative", "growth_factor": 1.5})
        {'name': 'multiplicative', 'violation_tolerance': 0.0001, 'has_restart': True, 'growth_factor': 1.5}
    """
    if spec is None or isinstance(spec, PenaltyUpdater):
        return spec
    options: dict[str, Any] = {}
    if isinstance(spec, Mapping):
        options = {k: v for k, v in spec.items() if k != "name"}
        spec = spec.get("name")
    if not isinstance(spec, str) or spec not in UPDATERS:
        choices = ", ".join(repr(name) for name in UPDATERS)
        raise ValueError(f"Expected 'penalty_updater' to be one of {choices}, or a mapping with 'name' and its "
                         f"options (got {spec!r})")
    cls = UPDATERS[spec]
    allowed = [f.name for f in fields(cls)]
    unknown = [k for k in options if k not in allowed]
    if unknown:
        raise ValueError(f"Expected the options of penalty_updater {spec!r} to be among {', '.join(allowed)} "
                         f"(got {unknown[0]!r})")
    return cls(**options)
