"""The scheduled-coefficient formulation (CR §3.2): the constrained variables follow a schedule.

Hard constraints on a target (e.g. ``Equality(gammas)``) are not enforced by multipliers; instead
the target's variables (every γ_i) are *set* to one shared coefficient c_t per epoch and not
trained. CR's triangle over ``N_E`` epochs:

.. math::
    c_i = \\begin{cases} 2i / N_E & i < N_E / 2 \\\\ \\max(0,\\, 2 - 2i / N_E) & i \\ge N_E / 2 \\end{cases}

0 at the start, 1 at mid-training, back to 0 at the last epoch, where the model is exactly
equivariant. ``Penalty`` constraints (CR's Lie-derivative and ‖Wx‖ terms) still apply.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from constrained_eq._utils.distributed import unwrap
from constrained_eq.core.formulations.base import ConstraintPlan, SoftFormulation, check_positive, penalty_plan
from constrained_eq.core.problem.constraints import Constraint, Penalty

__all__ = ["Schedule", "triangle"]

SHAPES = ("triangle", "constant")


def triangle(epoch: int, epochs: int) -> float:
    """CR's triangular schedule c(epoch) on ``epochs`` epochs (0 → 1 → 0).

    Examples:
        >>> [triangle(i, 4) for i in range(5)]
        [0.0, 0.5, 1.0, 0.5, 0.0]
    """
    if epoch < epochs / 2:
        return 2.0 * epoch / epochs
    return max(0.0, 2.0 - 2.0 * epoch / epochs)


class Schedule(SoftFormulation):
    """Scheduled coefficient for the constrained variables, plus the problem's penalties.

    Args:
        epochs (int): Total number of epochs N_E of the schedule.
        shape (str, optional): ``"triangle"`` (CR) or ``"constant"`` (CR's ablation)
            (default: :obj:`"triangle"`).
        value (float, optional): The coefficient of ``shape="constant"`` (default: :obj:`0.1`).
    """

    name = "schedule"
    expects_schedule = True
    signature = "scheduled"
    training_defaults = {"epochs": "epochs"}

    def __init__(self, epochs: int, shape: str = "triangle", value: float = 0.1) -> None:
        if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
            raise ValueError(f"Schedule: expected 'epochs' to be an integer ≥ 1 (got {epochs!r})")
        if shape not in SHAPES:
            raise ValueError(f"Schedule: expected 'shape' to be one of {', '.join(map(repr, SHAPES))} (got {shape!r})")
        self.epochs = epochs
        self.shape = shape
        self.value = check_positive(value, "value", "Schedule") if shape == "constant" else float(value)

    def options(self) -> dict:
        return {"epochs": self.epochs, "shape": self.shape, "value": self.value}

    def coefficient(self, epoch: int) -> float:
        """The coefficient c at ``epoch`` (0-based)."""
        if self.shape == "constant":
            return self.value
        return triangle(epoch, self.epochs)

    def plan(self, constraint: Constraint) -> ConstraintPlan:
        if isinstance(constraint, Penalty):
            return penalty_plan(constraint)
        return ConstraintPlan(constraint.key, constraint, "ignore")

    def attach_variables(self, variables: Sequence[torch.nn.Parameter], model: torch.nn.Module) -> None:
        """Freeze the variables (they are set each epoch, not trained); refuse a model already in DDP."""
        if variables and unwrap(model) is not model:
            raise ValueError(
                "Solver: the 'schedule' formulation freezes γ (it sets it each epoch), but the model is already "
                "wrapped in DistributedDataParallel, which registered γ as trained; build the Solver on the bare "
                "model and wrap it afterwards (`solver.model = DistributedDataParallel(solver.model)`, or "
                "constrained_eq._utils.distributed.wrap_model)"
            )
        for variable in variables:
            variable.requires_grad_(False)

    @torch.no_grad()
    def before_step(self, variables: Sequence[torch.nn.Parameter], epoch: int) -> None:
        """Set every variable to c(epoch)."""
        value = self.coefficient(epoch)
        for variable in variables:
            variable.fill_(value)
