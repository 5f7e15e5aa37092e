"""The homotopic mechanism: f_eq + γ·f_neq layers, relaxing a model into them and projecting it back.

* :mod:`~constrained_eq.homotopy.layers` — :class:`HomotopicLayer` (f_eq + γ f_neq), :class:`LinearBranch`,
  :func:`gammas` (the target of ACE's constraint γ = 0).
* :mod:`~constrained_eq.homotopy.relax` — :func:`relax` (wrap every equivariant layer) and :func:`project`
  (γ = 0: remove every branch, leaving the exactly equivariant model).
* :mod:`~constrained_eq.homotopy.recording` — :func:`recording`: the branches' inputs and outputs of the
  last forward, read by penalties and diagnostics.
* :mod:`~constrained_eq.homotopy.lie_penalty` — :func:`LieDerivative`: CR's Lie-derivative penalty on the
  branches, with its registered targets.
* :mod:`~constrained_eq.homotopy.metrics` — :func:`projection_error`: ‖f_{θ,γ}(x) − f_{θ,0}(x)‖.

The architectures that use the mechanism live in :mod:`constrained_eq.models`.
"""

from constrained_eq.homotopy import e3nn_layers  # noqa: F401  (registers e3nn's o3.Linear / o3.TensorProduct)
from constrained_eq.homotopy.layers import HomotopicLayer, LinearBranch, check_same_structure, gammas, homotopic_layers
from constrained_eq.homotopy.lie_penalty import LieDerivative, branch_norms, lie_derivative_norms, lie_regularizer
from constrained_eq.homotopy.metrics import projection_error
from constrained_eq.homotopy.recording import branch_contributions, recording, set_recording
from constrained_eq.homotopy.relax import is_relaxed, project, relax

__all__ = [
    "HomotopicLayer",
    "LinearBranch",
    "homotopic_layers",
    "gammas",
    "check_same_structure",
    "relax",
    "is_relaxed",
    "project",
    "recording",
    "set_recording",
    "branch_contributions",
    "projection_error",
    "LieDerivative",
    "lie_derivative_norms",
    "branch_norms",
    "lie_regularizer",
]
