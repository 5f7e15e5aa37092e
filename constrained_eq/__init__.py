"""constrained_eq: constrained learning for PyTorch.

Write a training problem as data (an objective and constraints), pick how to solve it by name,
and let one Lagrangian engine run the primal–dual loop.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from constrained_eq._utils.lazy import lazy_names

# Where each public name lives. Nothing is imported until a name is first used (PEP 562), so
# ``import constrained_eq`` and ``ceq --version`` cost almost nothing; ``ceq.Solver`` imports the engine
# (and torch) on first access, ``ceq.relax`` the homotopy layer, and so on.
_HOME = {
    "homotopy": "constrained_eq.homotopy",
    "symmetry": "constrained_eq.symmetry",
    **dict.fromkeys(("Equality", "Inequality", "Penalty", "Resilient"), "constrained_eq.core.problem.constraints"),
    **dict.fromkeys(("Target", "register_target"), "constrained_eq.core.problem.target"),
    "NuPI": "constrained_eq.core.solver.dual_optimizers",
    **dict.fromkeys(("Solver", "StepRecord"), "constrained_eq.core.solver.engine"),
    "NonFiniteError": "constrained_eq.core.solver.cooper_bridge",
    **dict.fromkeys(("Formulation", "register_formulation", "resolve_formulation"), "constrained_eq.core.formulations"),
    **dict.fromkeys(("ConstrainedProblem", "Objective"), "constrained_eq.core.problem.problem"),
    **dict.fromkeys(("Strategy", "register_strategy"), "constrained_eq.run.strategies"),
    **dict.fromkeys(("false_positive_rate", "l1_norms", "positive_rate_gap", "spectral_norms"),
                    "constrained_eq.core.problem.targets"),
    **dict.fromkeys(("HomotopicLayer", "LieDerivative", "LinearBranch", "branch_contributions", "gammas",
                     "is_relaxed", "project", "recording", "relax", "set_recording"), "constrained_eq.homotopy"),
    **dict.fromkeys(("FeatureSpec", "register_relaxable"), "constrained_eq.homotopy.relax"),
    "training": "constrained_eq.training",
    "fit": "constrained_eq.training.loop",
    **dict.fromkeys(("FitResult", "Evaluation", "Selection", "Averaging", "Limits", "Logging"),
                    "constrained_eq.training.settings"),
    **dict.fromkeys(("Callback", "LambdaCallback"), "constrained_eq.training.callbacks"),
    "LRScheduler": "constrained_eq.training.schedules",
    "GradClipper": "constrained_eq.training.clipping",
    "plot_run": "constrained_eq.run.plots",
    "register_group": "constrained_eq.symmetry",
    **dict.fromkeys(("Task", "register_task"), "constrained_eq.tasks"),
}
# imported with the first public name: they register the built-in targets ("gammas", "false_positive_rate", …)
_REGISTERING = ("constrained_eq.core.problem.targets", "constrained_eq.homotopy")
__getattr__, __dir__ = lazy_names(__name__, _HOME, _REGISTERING)

if TYPE_CHECKING:  # what type checkers and editors see: the same names, imported eagerly
    from constrained_eq import homotopy, symmetry, training
    from constrained_eq.core.formulations import Formulation, register_formulation, resolve_formulation
    from constrained_eq.core.problem.constraints import Equality, Inequality, Penalty, Resilient
    from constrained_eq.core.problem.problem import ConstrainedProblem, Objective
    from constrained_eq.core.problem.target import Target, register_target
    from constrained_eq.core.problem.targets import false_positive_rate, l1_norms, positive_rate_gap, spectral_norms
    from constrained_eq.core.solver.cooper_bridge import NonFiniteError
    from constrained_eq.core.solver.dual_optimizers import NuPI
    from constrained_eq.core.solver.engine import Solver, StepRecord
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
    from constrained_eq.run.plots import plot_run
    from constrained_eq.run.strategies import Strategy, register_strategy
    from constrained_eq.symmetry import register_group
    from constrained_eq.tasks import Task, register_task
    from constrained_eq.training.callbacks import Callback, LambdaCallback
    from constrained_eq.training.clipping import GradClipper
    from constrained_eq.training.loop import fit
    from constrained_eq.training.schedules import LRScheduler
    from constrained_eq.training.settings import Averaging, Evaluation, FitResult, Limits, Logging, Selection

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
    "Evaluation",
    "Selection",
    "Averaging",
    "Limits",
    "Logging",
    "Callback",
    "LambdaCallback",
    "LRScheduler",
    "GradClipper",
    "plot_run",
    "symmetry",
    "homotopy",
    "training",
]
