"""constrained_eq: constrained learning for PyTorch.

Write a training problem as data (an objective and constraints), pick how to solve it by name,
and let one Lagrangian engine run the primal–dual loop.
"""

from constrained_eq import homotopy, symmetry
from constrained_eq.core.constraints import Equality, Inequality, Penalty, Resilient, Target, register_target
from constrained_eq.core.dual_optimizers import NuPI
from constrained_eq.core.engine import NonFiniteError, Solver, StepRecord
from constrained_eq.core.formulations import Formulation, register_formulation, resolve_formulation
from constrained_eq.core.problem import ConstrainedProblem, Objective
from constrained_eq.core.strategies import Strategy, register_strategy
from constrained_eq.core.targets import false_positive_rate, l1_norms, positive_rate_gap, spectral_norms
from constrained_eq.homotopy import (
    HomotopicLayer,
    LieDerivative,
    LinearBranch,
    branch_contributions,
    gammas,
    is_relaxed,
    project,
    recording,
    relax,
    set_recording,
)
from constrained_eq.homotopy.relax import FeatureSpec, register_relaxable
from constrained_eq.run.train import FitResult, fit
from constrained_eq.symmetry import register_group
from constrained_eq.tasks import Task, register_task

# The names that moved from ``symmetry`` to ``homotopy`` (they need relaxed models, and symmetry sits below
# homotopy) stay reachable as ``ceq.symmetry.<name>``: attached here, at the top, so that no lower module
# imports upwards.
for _name in ("LieDerivative", "lie_derivative_norms", "branch_norms", "lie_regularizer", "projection_error",
              "branch_contributions"):
    setattr(symmetry, _name, getattr(homotopy, _name))
del _name

__version__ = "0.1.0"

__all__ = [
    "ConstrainedProblem",
    "Objective",
    "Target",
    "register_target",
    "Equality",
    "Inequality",
    "Resilient",
    "Penalty",
    "LieDerivative",
    "Solver",
    "NuPI",
    "StepRecord",
    "NonFiniteError",
    "resolve_formulation",
    "Formulation",
    "register_formulation",
    "Strategy",
    "register_strategy",
    "Task",
    "register_task",
    "register_group",
    "FeatureSpec",
    "register_relaxable",
    "HomotopicLayer",
    "LinearBranch",
    "relax",
    "project",
    "is_relaxed",
    "gammas",
    "branch_contributions",
    "recording",
    "set_recording",
    "spectral_norms",
    "l1_norms",
    "false_positive_rate",
    "positive_rate_gap",
    "fit",
    "FitResult",
    "symmetry",
]
