"""The selection a problem file asks for: which column ``fit`` ranks evaluations by, and in which direction.

``evaluation.select: auto`` picks ``feasible`` when the problem has constraints a deployed model must meet,
else the deployed model's loss; the ranking itself is :mod:`constrained_eq.training.selection`.
"""

from __future__ import annotations

from constrained_eq.core.solver.engine import Solver
from constrained_eq.core.solver.split_feasibility import counted
from constrained_eq.run.problem_model import Problem
from constrained_eq.run.strategies import get_strategy
from constrained_eq.tasks import Task
from constrained_eq.training.selection import FEASIBLE

__all__ = ["selection_column", "objective_column", "selection_mode"]


def selection_column(problem: Problem, relaxed: bool, solver: Solver | None = None) -> str:
    """The validation column that picks the best epoch, or ``"feasible"``.

    ``select: auto`` is ``feasible`` when the problem has constraints a deployed model must meet (any
    enforced constraint that is not a penalty or a homotopy constraint on γ, see
    :mod:`constrained_eq.core.solver.split_feasibility`); otherwise the projected model's loss for strategies that
    deploy f_{θ,0} (ACE equality, CR) and the model's own loss otherwise (ACE resilient deploys f_eq + f_neq).
    """
    select = problem.evaluation.select
    if select == "auto" and solver is not None and counted(solver.plans):
        return FEASIBLE
    if select != "auto":
        return select
    return objective_column(problem, relaxed)


def objective_column(problem: Problem, relaxed: bool) -> str:
    """The loss of the deployed model: ``val_projected_loss`` for strategies that deploy f_{θ,0}, else ``val_loss``."""
    deploys_projection = relaxed and get_strategy(problem.strategy).deploys_projection
    return "val_projected_loss" if deploys_projection else "val_loss"


def selection_mode(problem: Problem, relaxed: bool, task: Task) -> str:
    """``"max"`` when the selected column is a metric the task wants large (an accuracy), else ``"min"``."""
    column = selection_column(problem, relaxed)
    column = objective_column(problem, relaxed) if column == FEASIBLE else column
    return "max" if column.removeprefix("val_") in task.higher_is_better else "min"

