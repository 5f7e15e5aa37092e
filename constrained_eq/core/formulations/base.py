"""What every formulation shares: the per-constraint plan and the capability flags.

A formulation decides *how* each declared constraint enters training, without touching the
problem. It turns every constraint into a :class:`ConstraintPlan`:

* ``mode="lagrangian"`` — a Cooper ``Constraint`` (a multiplier and/or penalty coefficient);
* ``mode="penalty"`` — a soft term ``w · Σ_i p_i`` added to the objective;
* ``mode="ignore"`` — not enforced (vanilla training, or a scheduled coefficient).

The violation handed to Cooper is ``base(values) − u`` when the plan has a slack ``u ≥ 0``
(cost ρ/2 ‖u‖² in the objective) and ``base(values)`` otherwise.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import cooper
import torch
from cooper.utils import ConstraintType

from constrained_eq._utils.checks import check_number
from constrained_eq.core.problem.constraints import Constraint, Equality, Inequality, Penalty, Resilient

__all__ = ["ConstraintPlan", "Formulation", "SoftFormulation", "hard_plan", "penalty_plan"]


@dataclass(frozen=True)
class ConstraintPlan:
    """How one declared constraint is handled by the engine.

    Attributes:
        key: The constraint's name.
        constraint: The declared constraint.
        mode: ``"lagrangian"`` (Cooper constraint), ``"penalty"`` (soft term) or ``"ignore"``.
        constraint_type: Cooper's equality/inequality type (``mode="lagrangian"`` only).
        base: Map from target values (L,) to the violation before any slack.
        rho: Slack cost ρ when the plan has a learnable slack u ≥ 0, else ``None``.
        slack_init: u⁽⁰⁾.
        weight: Weight of a ``"penalty"`` plan.
    """

    key: str
    constraint: Constraint
    mode: Literal["lagrangian", "penalty", "ignore"]
    constraint_type: ConstraintType | None = None
    base: Callable[[torch.Tensor], torch.Tensor] | None = None
    rho: float | None = None
    slack_init: float = 0.0
    weight: float = 0.0

    @property
    def has_slack(self) -> bool:
        return self.rho is not None

    def violation(self, values: torch.Tensor, slack: torch.Tensor | None) -> torch.Tensor:
        """Violation ``base(values) − u`` (or ``base(values)``); ≤ 0 / = 0 when satisfied."""
        violation = self.base(values)
        return violation - slack if slack is not None else violation


def _abs(values: torch.Tensor) -> torch.Tensor:
    return values.abs()


def _identity(values: torch.Tensor) -> torch.Tensor:
    return values


@dataclass(frozen=True)
class _AbsOf:
    """|h(θ) − d|: an equality with a right-hand side, relaxed by a slack."""

    violation: Callable[[torch.Tensor], torch.Tensor]

    def __call__(self, values: torch.Tensor) -> torch.Tensor:
        return self.violation(values).abs()


def hard_plan(constraint: Constraint, *, resilient_rho: float | None = None) -> ConstraintPlan:
    """The plan of a hard constraint, optionally relaxed with a slack of cost ``resilient_rho``.

    ``Equality`` h = d becomes |h − d| ≤ u and ``Inequality`` g ≤ b becomes g − b ≤ u when relaxed
    (a ≤ g becomes a − g ≤ u; a two-sided bound relaxes each side);
    a declared ``Resilient`` constraint always keeps its own slack and ρ.
    """
    key = constraint.key
    if isinstance(constraint, Resilient):
        return ConstraintPlan(key, constraint, "lagrangian", ConstraintType.INEQUALITY, _abs,
                              constraint.rho, constraint.slack_init)
    if isinstance(constraint, Equality):
        if resilient_rho is not None:
            return ConstraintPlan(key, constraint, "lagrangian", ConstraintType.INEQUALITY,
                                  _abs if constraint.value == 0.0 else _AbsOf(constraint.violation), resilient_rho)
        return ConstraintPlan(key, constraint, "lagrangian", ConstraintType.EQUALITY,
                              _identity if constraint.value == 0.0 else constraint.violation)
    if isinstance(constraint, Inequality):
        return ConstraintPlan(key, constraint, "lagrangian", ConstraintType.INEQUALITY, constraint.violation,
                              resilient_rho)
    raise TypeError(f"Expected a hard constraint (Equality, Inequality or Resilient) (got {type(constraint).__name__})")


def penalty_plan(constraint: Penalty) -> ConstraintPlan:
    """The plan of a soft ``Penalty``: ``weight · Σ_i p_i`` added to the objective."""
    return ConstraintPlan(constraint.key, constraint, "penalty", weight=constraint.weight)


class Formulation(ABC):
    """Base class: how constraints enter training.

    A subclass sets ``name`` and implements :meth:`build` (the Cooper constraint of a
    ``mode="lagrangian"`` plan); it may override :meth:`plan` (default: hard constraints get a
    multiplier, ``Penalty`` constraints a soft term) and the two hooks on the constrained variables,
    :meth:`attach_variables` and :meth:`before_step`. Register it with
    :func:`constrained_eq.core.formulations.register_formulation` to choose it by name.

    Attributes:
        name: The name this formulation is chosen by.
        expects_multiplier: Builds Lagrange multipliers (needs a dual optimizer).
        expects_slack: Relaxes hard constraints with learnable slacks (resilient).
        expects_schedule: Sets the targets' variables itself (:meth:`before_step`) instead of training them.
        signature: For a formulation that puts no multiplier on γ, the word the symmetry report gives
            every layer (``"free"``, ``"scheduled"``, ``"penalised"``); ``None`` otherwise.
        training_defaults: Options filled from the problem file's ``training`` section when the file
            does not give them, ``{option: training key}`` (e.g. ``{"epochs": "epochs"}``).
    """

    name: ClassVar[str]
    expects_multiplier: ClassVar[bool] = False
    expects_slack: ClassVar[bool] = False
    expects_schedule: ClassVar[bool] = False
    signature: ClassVar[str | None] = None
    training_defaults: ClassVar[Mapping[str, str]] = {}

    def plan(self, constraint: Constraint) -> ConstraintPlan:
        """Decide how ``constraint`` is handled."""
        if isinstance(constraint, Penalty):
            return penalty_plan(constraint)
        return hard_plan(constraint)

    @abstractmethod
    def build(self, plan: ConstraintPlan, num_constraints: int, device: torch.device, dtype: torch.dtype
              ) -> cooper.Constraint:
        """Build the Cooper constraint of a ``mode="lagrangian"`` plan."""

    def attach_variables(self, variables: Sequence[torch.nn.Parameter], model: torch.nn.Module) -> None:
        """Called once by the Solver with the constrained variables (γ) of the non-penalty plans (default: nothing).

        A formulation that sets the variables itself (``expects_schedule``) freezes them here.
        """
        return None

    def before_step(self, variables: Sequence[torch.nn.Parameter], epoch: int) -> None:
        """Called by the Solver before every step with the constrained variables and the epoch (default: nothing)."""
        return None

    def options(self) -> dict[str, Any]:
        """The options this formulation was built with (for reprs and checkpoints)."""
        return {}

    def penalty_coefficient_updater(self) -> cooper.penalty_coefficients.PenaltyCoefficientUpdater | None:
        """Cooper's updater of the penalty coefficients, or ``None`` when they stay fixed."""
        updater = getattr(self, "penalty_updater", None)
        return updater.build() if updater is not None else None

    def __repr__(self) -> str:
        options = ", ".join(f"{k}={v!r}" for k, v in self.options().items())
        return f"{type(self).__name__}({options})"

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and other.options() == self.options()

    def __hash__(self) -> int:
        return hash((type(self).__name__, tuple(sorted(self.options().items()))))


class SoftFormulation(Formulation):
    """A formulation whose plans are never ``mode="lagrangian"`` (no Cooper constraint to build)."""

    def build(self, plan: ConstraintPlan, num_constraints: int, device: torch.device, dtype: torch.dtype
              ) -> cooper.Constraint:
        raise TypeError(f"{type(self).__name__} plans no Lagrangian constraint (got a plan for {plan.key!r})")


def check_positive(value: Any, field_name: str, owner: str) -> float:
    """Return ``value`` as a float, or raise if it is not a finite number > 0."""
    return check_number(value, field_name, owner, above=0)
