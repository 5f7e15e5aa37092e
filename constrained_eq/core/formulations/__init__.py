"""Formulations: how each constraint enters training, chosen by name.

======================  =====================================  ============================
name                    class                                  use it for
======================  =====================================  ============================
``lagrangian``          :class:`Lagrangian`                    ACE Alg. 1 (γ = 0), any hard constraint
``augmented_lagrangian`` :class:`AugmentedLagrangian`          stiffer dual dynamics
``resilient``           :class:`ResilientLagrangian`           ACE Alg. 2 (|γ| ≤ u, learned u)
``penalty``             :class:`QuadraticPenalty`              fixed quadratic penalty
``schedule``            :class:`Schedule`                      CR: scheduled γ + penalties
``none``                :class:`Unconstrained`                 vanilla training
======================  =====================================  ============================

Add your own with :func:`register_formulation` (``ceq.register_formulation``): the Solver, problem
files (``formulation: {name: ...}``) and reports then know it by name (see docs/extending.md).
"""

from __future__ import annotations

import inspect
from typing import Any

from constrained_eq.core.formulations.augmented import AugmentedLagrangian
from constrained_eq.core.formulations.base import ConstraintPlan, Formulation, SoftFormulation, hard_plan, penalty_plan
from constrained_eq.core.formulations.lagrangian import Lagrangian
from constrained_eq.core.formulations.none import Unconstrained
from constrained_eq.core.formulations.penalty import QuadraticPenalty
from constrained_eq.core.formulations.resilient import ResilientLagrangian
from constrained_eq.core.formulations.schedule import Schedule, triangle

__all__ = [
    "Formulation",
    "SoftFormulation",
    "ConstraintPlan",
    "hard_plan",
    "penalty_plan",
    "Lagrangian",
    "AugmentedLagrangian",
    "ResilientLagrangian",
    "QuadraticPenalty",
    "Schedule",
    "Unconstrained",
    "FORMULATIONS",
    "register_formulation",
    "formulation_class",
    "formulation_names",
    "resolve_formulation",
    "triangle",
]

FORMULATIONS: dict[str, type[Formulation]] = {}  # the registry: name -> class, filled by register_formulation


def register_formulation(name: str, cls: type[Formulation]) -> type[Formulation]:
    """Make the formulation class ``cls`` known by ``name`` (to the Solver, problem files and reports).

    ``cls`` must subclass :class:`Formulation`; its ``name`` attribute is set to ``name`` when it has none
    and must equal it otherwise. Registering a name again replaces the class. Returns ``cls``.

    Raises:
        TypeError: If ``cls`` is not a concrete :class:`Formulation` subclass.
        ValueError: If ``name`` is not an identifier or differs from ``cls.name``.
    """
    if not isinstance(name, str) or not name.isidentifier():
        raise ValueError(f"Expected 'name' to be a Python identifier (got {name!r})")
    if not isinstance(cls, type) or not issubclass(cls, Formulation) or inspect.isabstract(cls):
        raise TypeError(f"Expected 'cls' to be a Formulation subclass that implements build() (got {cls!r})")
    declared = cls.__dict__.get("name")
    if declared is None:
        cls.name = name
    elif declared != name:
        raise ValueError(f"Expected 'name' to be the class's own name {declared!r} (got {name!r})")
    FORMULATIONS[name] = cls
    return cls


def formulation_names() -> list[str]:
    """The registered formulation names."""
    return list(FORMULATIONS)


def formulation_class(name: str) -> type[Formulation]:
    """The class registered as ``name``.

    Raises:
        ValueError: If the name is unknown (the message lists the choices).
    """
    if not isinstance(name, str) or name not in FORMULATIONS:
        choices = ", ".join(repr(k) for k in FORMULATIONS)
        raise ValueError(f"Expected 'formulation' to be one of {choices} (got {name!r})")
    return FORMULATIONS[name]


for _cls in (Lagrangian, AugmentedLagrangian, ResilientLagrangian, QuadraticPenalty, Schedule, Unconstrained):
    register_formulation(_cls.name, _cls)
del _cls


def resolve_formulation(query: str | Formulation, **options: Any) -> Formulation:
    """Return a formulation from its name (built with ``options``) or an instance as is.

    Raises:
        ValueError: If the name is unknown (the message lists the choices).

    Examples:
        >>> resolve_formulation("resilient", rho=2.0)
        ResilientLagrangian(rho=2.0)
    """
    if isinstance(query, Formulation):
        if options:
            raise ValueError(f"Got options {sorted(options)} together with a built formulation {query!r}")
        return query
    cls = formulation_class(query)
    try:
        return cls(**options)
    except TypeError as err:
        raise ValueError(f"Bad options for formulation {query!r}: {err}") from None
