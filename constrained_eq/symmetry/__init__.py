"""Groups, representations, equivariance metrics, Lie derivatives, the Lie penalty and ACE's bounds."""

from constrained_eq.symmetry.bounds import (
    equivariance_error_bound,
    equivariance_error_bound_from_activations,
    projection_error_bound,
    projection_error_bound_from_activations,
)
from constrained_eq.symmetry.groups import SO, C, E, Group, O, S, cartesian_generators, parse_group, register_group
from constrained_eq.symmetry.haar import random_rotation
from constrained_eq.symmetry.lie_derivative import lie_derivative, linear_lie_derivative
from constrained_eq.symmetry.lie_penalty import LieDerivative, branch_norms, lie_derivative_norms, lie_regularizer
from constrained_eq.symmetry.metrics import branch_contributions, equivariance_error, projection_error
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
    "projection_error",
    "branch_contributions",
    "lie_derivative",
    "linear_lie_derivative",
    "assert_equivariant",
    "LieDerivative",
    "lie_derivative_norms",
    "branch_norms",
    "lie_regularizer",
    "projection_error_bound",
    "equivariance_error_bound",
    "projection_error_bound_from_activations",
    "equivariance_error_bound_from_activations",
]
