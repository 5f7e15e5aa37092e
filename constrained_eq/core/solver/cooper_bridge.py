"""The bridge to Cooper: a ``ConstrainedMinimizationProblem`` built from a declared problem.

It evaluates the objective, every constraint target and the slack costs for one batch, and hands
Cooper a ``CMPState``. Under ``torch.distributed`` the violations that drive the dual step
(Cooper's ``strict_violation``) are averaged over ranks, so every rank takes the same dual step.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import cooper
import torch
import torch.distributed as dist

from constrained_eq._utils.distributed import all_reduce_mean_, is_distributed, unwrap
from constrained_eq.core.formulations.base import ConstraintPlan
from constrained_eq.core.problem.problem import ConstrainedProblem

__all__ = ["ProblemCMP", "NonFiniteError", "StepValues"]


class NonFiniteError(FloatingPointError):
    """A loss, violation or gradient was NaN or Inf; the step was not taken."""


@dataclass
class StepValues:
    """What one evaluation of the problem produced (kept in ``CMPState.misc``).

    ``values`` keep their graph (penalties differentiate through them); ``logged`` are detached
    copies taken before the step, since a target may alias a parameter that the step updates.
    """

    objective: torch.Tensor
    values: dict[str, torch.Tensor] = field(default_factory=dict)
    logged: dict[str, torch.Tensor] = field(default_factory=dict)
    logged_violations: dict[str, torch.Tensor] = field(default_factory=dict)
    violations: dict[str, torch.Tensor] = field(default_factory=dict)
    output: Any = None


def _snapshot(tensor: torch.Tensor) -> torch.Tensor:
    """A detached value that the coming step cannot change.

    A fresh result (``torch.stack(γ)``) is only detached; a parameter or a view of one, which the step
    updates in place, is copied; so is every value under ``torch.compile`` (which cannot ask whether a
    tensor is a view, and whose outputs may alias its inputs).
    """
    detached = tensor.detach()
    if torch.compiler.is_compiling():
        return detached.clone()
    return detached.clone() if tensor.is_leaf or tensor._is_view() else detached


class ProblemCMP(cooper.ConstrainedMinimizationProblem):
    """Cooper view of a :class:`ConstrainedProblem` under one formulation.

    Args:
        problem: The declared problem.
        plans: One plan per declared constraint (same order).
        cooper_constraints: Cooper constraints of the ``"lagrangian"`` plans, by key.
        slacks: Slack parameters u of the plans that have one, by key.
        check_finite: Raise :class:`NonFiniteError` on a non-finite loss or violation (one host
            sync per evaluation).
        bound_variables: Per constraint key, the parameters found once by a target with
            ``from_variables`` (γ); its values are then ``target.from_variables(params)``.
        target_sizes: Per constraint key, the length L its target returned when the Solver was built;
            each evaluation refuses a target whose length differs (a length that follows the batch).
    """

    def __init__(
        self,
        problem: ConstrainedProblem,
        plans: list[ConstraintPlan],
        cooper_constraints: dict[str, cooper.Constraint],
        slacks: dict[str, torch.nn.Parameter],
        check_finite: bool = True,
        bound_variables: dict[str, list[torch.nn.Parameter]] | None = None,
        target_sizes: dict[str, int] | None = None,
    ) -> None:
        super().__init__()
        self.problem = problem
        self.plans = plans
        self.slacks = slacks
        self.bound_variables = bound_variables or {}
        self._targets = {plan.key: plan.constraint.target for plan in plans}
        self.target_sizes = target_sizes or {}
        self.check_finite = check_finite
        self.step_index = 0
        self.dual_update = True
        self._last_logged: dict[str, torch.Tensor] = {}  # of the penalties evaluated every k > 1 steps
        for key, constraint in cooper_constraints.items():
            setattr(self, key, constraint)  # Cooper's public registration: a Constraint attribute
        self.cooper_constraints = dict(self.named_constraints())

    def evaluate(self, model: torch.nn.Module, batch: Any, *, with_objective: bool = True) -> StepValues:
        """Forward the model and evaluate the objective and every target on ``batch``.

        Under DDP only the objective's forward goes through the wrapper; targets see the bare module
        (a target that runs the model again, like the Lie derivative, must not start a second DDP
        forward; its gradients still reach the same parameters and are averaged with the rest).

        A penalty with ``every=k`` is evaluated only when ``step_index % k == 0``; on the other steps it has
        no ``values`` and logs its last computed values (NaN of its length before the first).
        """
        early = self._stack_bound_variables()
        output = self.problem.objective.forward(model, batch)
        objective = self.problem.objective(output, batch) if with_objective else None
        if objective is not None and objective.numel() != 1:  # shapes only: no host sync
            raise ValueError(f"the objective returned shape {tuple(objective.shape)} on this batch; expected a "
                             "scalar (a 0-d tensor): reduce it over the batch, e.g. with .mean()")
        result = StepValues(objective=objective, output=output)
        bare = unwrap(model)
        sizes = self.target_sizes
        for plan in self.plans:
            every = getattr(plan.constraint, "every", 1)
            if every != 1 and self.step_index % every != 0:  # step_index is read (and compiled on) only here
                result.logged[plan.key] = self._last_or_nan(plan.key, bare)
                continue
            target, bound = plan.constraint.target, self.bound_variables.get(plan.key)
            values = early[plan.key] if bound is not None else target(bare, batch, output)
            values = values.reshape(-1) if values.dim() != 1 else values
            if plan.key in sizes and max(values.numel(), 1) != sizes[plan.key]:
                raise ValueError(f"the target {target.name!r} of constraint {plan.key!r} returned shape "
                                 f"({values.numel()},) on this batch but ({sizes[plan.key]},) when the Solver was "
                                 "built; a target has a fixed length L whatever the batch: reduce over the batch "
                                 "(e.g. .mean(0))")
            result.values[plan.key] = values
            result.logged[plan.key] = _snapshot(values)
            if every != 1:
                self._last_logged[plan.key] = result.logged[plan.key]
            if plan.mode == "lagrangian":
                violation = plan.violation(values, self.slacks.get(plan.key))
                result.violations[plan.key] = violation
                result.logged_violations[plan.key] = _snapshot(violation)
        return result

    def _last_or_nan(self, key: str, model: torch.nn.Module) -> torch.Tensor:
        """What a penalty skipped on this step logs: its last computed values, or NaN before the first."""
        if key in self._last_logged:
            return self._last_logged[key]
        device = next(model.parameters(), torch.empty(0)).device
        return torch.full((self.target_sizes.get(key, 1),), float("nan"), device=device)

    def _stack_bound_variables(self) -> dict[str, torch.Tensor]:
        """The values of the targets read from the parameters alone (γ), taken *before* the forward.

        The order is for speed: autograd runs the later-built nodes first, so a
        ``torch.stack(γ)`` built after the forward hands every γ its (view) gradient first, and the forward's
        gradient is then added out of place (one extra ``aten::add`` per γ, ~2–3 ms at L = 1,024 on a CPU).
        Built before the forward, the stack's gradient arrives last and is added in place, as in a
        hand-written loop. A γ used once in the forward gets the same gradient either way (a + b = b + a);
        a layer that multiplies γ into several outputs (EGNN's (h, x)) now sums them before the stack's
        term, (g_h + g_x) + λ instead of (λ + g_h) + g_x, which can move γ's gradient by one rounding.
        """
        return {key: self._targets[key].from_variables(params) for key, params in self.bound_variables.items()}

    def _state(self, result: StepValues, loss: torch.Tensor | None) -> cooper.CMPState:
        observed = {}
        for key, violation in result.violations.items():
            strict = all_reduce_mean_(violation.detach().clone()) if is_distributed() else None
            observed[self.cooper_constraints[key]] = cooper.ConstraintState(
                violation=violation, strict_violation=strict, contributes_to_dual_update=self.dual_update
            )
        return cooper.CMPState(loss=loss, observed_constraints=observed, misc={"values": result})

    def compute_cmp_state(self, model: torch.nn.Module, batch: Any) -> cooper.CMPState:
        """J_0 + Σ penalties + Σ ρ/2‖u‖², and the violations of every Lagrangian plan.

        A penalty with ``every=k`` adds ``k · w · Σ_i p_i`` on the steps it is evaluated and nothing otherwise.
        """
        result = self.evaluate(model, batch)
        loss = result.objective
        for plan in self.plans:
            if plan.mode == "penalty" and plan.key in result.values:
                loss = loss + getattr(plan.constraint, "every", 1) * plan.weight * result.values[plan.key].sum()
            if plan.has_slack and plan.mode == "lagrangian":
                loss = loss + 0.5 * plan.rho * self.slacks[plan.key].pow(2).sum()
        if self.check_finite:
            self._raise_if_nonfinite(result, loss)
        return self._state(result, loss)

    def compute_violations(self, model: torch.nn.Module, batch: Any) -> cooper.CMPState:
        """The violations alone (used by the alternating primal–dual optimizer after its primal step)."""
        result = self.evaluate(model, batch, with_objective=False)
        if self.check_finite:
            self._raise_if_nonfinite(result, None)
        return self._state(result, None)

    def _raise_if_nonfinite(self, result: StepValues, loss: torch.Tensor | None) -> None:
        checked = [v for v in result.values.values()]
        if loss is not None:
            checked.append(loss.reshape(1))
        if not checked:
            return
        finite = torch.isfinite(torch.cat([c.detach().reshape(-1) for c in checked])).all().to(torch.int32)
        if is_distributed():  # all ranks must agree, or the ones that go on wait forever in DDP's all-reduce
            dist.all_reduce(finite, op=dist.ReduceOp.MIN)
        if bool(finite):
            return
        # Failure path only: find which quantity is to blame.
        if result.objective is not None and not torch.isfinite(result.objective).all():
            raise NonFiniteError(f"step {self.step_index}: the objective {self.problem.objective!r} is "
                                 f"{result.objective.detach().item()}; nothing was updated")
        for key, values in result.values.items():
            if not torch.isfinite(values).all():
                raise NonFiniteError(f"step {self.step_index}: constraint {key!r} has non-finite values "
                                     f"{values.detach().cpu().tolist()}; nothing was updated")
        if loss is not None and not torch.isfinite(loss).all():
            raise NonFiniteError(f"step {self.step_index}: the loss with penalties is non-finite; nothing was updated")
        raise NonFiniteError(f"step {self.step_index}: another rank's batch gave a non-finite loss or violation; "
                             "nothing was updated")
