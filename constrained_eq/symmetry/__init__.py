"""Groups, representations, the equivariance error, Lie derivatives and ACE's bounds.

This layer sits below :mod:`constrained_eq.homotopy` and imports nothing from it. What needs a relaxed
model — the Lie penalty :func:`~constrained_eq.homotopy.lie_penalty.LieDerivative` and its targets, and
:func:`~constrained_eq.homotopy.metrics.projection_error` / ``branch_contributions`` — lives in
:mod:`constrained_eq.homotopy`. Their older names here (``ceq.symmetry.LieDerivative``, …) keep working:
the module's ``__getattr__`` (:func:`~constrained_eq._utils.lazy.lazy_names`) resolves them from
:mod:`constrained_eq.homotopy` on first use, and this module never
imports that layer when it is loaded.
"""

from constrained_eq._utils.lazy import lazy_names
from constrained_eq.symmetry.bounds import (
    equivariance_error_bound,
    equivariance_error_bound_from_activations,
    projection_error_bound,
    projection_error_bound_from_activations,
)
from constrained_eq.symmetry.groups import SO, C, E, Group, O, S, cartesian_generators, parse_group, register_group
from constrained_eq.symmetry.haar import random_rotation
from constrained_eq.symmetry.lie_derivative import lie_derivative, linear_lie_derivative
from constrained_eq.symmetry.metrics import equivariance_error
from constrained_eq.symmetry.reps import (
    DirectSumRep,
    IrrepsRep,
    PermutationRep,
    Rep,
    ScalarRep,
    VectorRep,
    act,
    linear_part,
)
from constrained_eq.symmetry.testing import assert_equivariant

# names that moved up to constrained_eq.homotopy (they need relaxed models); reachable here by their old names
_MOVED = ("LieDerivative", "lie_derivative_norms", "branch_norms", "lie_regularizer", "projection_error",
          "branch_contributions")


__getattr__, __dir__ = lazy_names(__name__, dict.fromkeys(_MOVED, "constrained_eq.homotopy"))

__all__ = [
    "Group",
    "SO",
    "O",
    "E",
    "C",
    "S",
    "parse_group",
    "register_group",
    "cartesian_generators",
    "random_rotation",
    "Rep",
    "IrrepsRep",
    "VectorRep",
    "ScalarRep",
    "PermutationRep",
    "DirectSumRep",
    "act",
    "linear_part",
    "equivariance_error",
    "lie_derivative",
    "linear_lie_derivative",
    "assert_equivariant",
    "projection_error_bound",
    "equivariance_error_bound",
    "projection_error_bound_from_activations",
    "equivariance_error_bound_from_activations",
]
