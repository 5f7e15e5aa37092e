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
"""

from __future__ import annotations

from typing import Any

from constrained_eq.core.formulations.augmented import AugmentedLagrangian
from constrained_eq.core.formulations.base import ConstraintPlan, Formulation
from constrained_eq.core.formulations.lagrangian import Lagrangian
from constrained_eq.core.formulations.none import Unconstrained
from constrained_eq.core.formulations.penalty import QuadraticPenalty
from constrained_eq.core.formulations.resilient import ResilientLagrangian
from constrained_eq.core.formulations.schedule import Schedule, triangle

__all__ = [
    "Formulation",
    "ConstraintPlan",
    "Lagrangian",
    "AugmentedLagrangian",
    "ResilientLagrangian",
    "QuadraticPenalty",
    "Schedule",
    "Unconstrained",
    "FORMULATIONS",
    "resolve_formulation",
    "triangle",
]

FORMULATIONS: dict[str, type[Formulation]] = {
    cls.name: cls
    for cls in (Lagrangian, AugmentedLagrangian, ResilientLagrangian, QuadraticPenalty, Schedule, Unconstrained)
}


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
    if not isinstance(query, str) or query not in FORMULATIONS:
        choices = ", ".join(repr(name) for name in FORMULATIONS)
        raise ValueError(f"Expected 'formulation' to be one of {choices} (got {query!r})")
    try:
        return FORMULATIONS[query](**options)
    except TypeError as err:
        raise ValueError(f"Bad options for formulation {query!r}: {err}") from None
