r"""Constraints measured where the model is judged: over a whole validation or test split.

A training step sees one mini-batch; whether the *deployed* model meets its constraints is a question
about the split. :func:`measure` evaluates every constraint of a solver's problem on a model:

* a parameter-only target (a weight norm, γ) once;
* a target that reads the batch, reduced as its constraint is defined: the batch-size-weighted mean
  :math:`\bar g = \sum_b n_b\, g_b / \sum_b n_b` for an expectation, or ``target.from_totals(Σ_b totals_b)``
  for a rate or ratio (see :class:`~constrained_eq.core.problem.target.Target`).

The violation of each element is :math:`|h_i|` for an equality, :math:`[g_i - b]_+` for an inequality
and :math:`[|h_i| - u_i]_+` for a constraint relaxed by a slack u (resilient), with the formulation's plan.

**Feasibility verdict.** A model is *feasible* when every counted constraint's largest violation is at
most the tolerance :math:`\tau` (``DEFAULT_TOLERANCE`` = 1e-3, in the target's own units; ``fit(...,
feasibility_tol=)`` or ``evaluation.feasibility_tol``). Counted are the enforced constraints a deployed
model must meet: every constraint but penalties and homotopy constraints — those whose target acts on
constrained variables (ACE's γ), which the deployed projection sets to 0 exactly. Homotopy constraints
are still measured and logged.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import torch
from cooper.utils import ConstraintType

from constrained_eq._utils.loaders import batch_size, to_device
from constrained_eq.core.formulations.base import ConstraintPlan

__all__ = ["DEFAULT_TOLERANCE", "Measurement", "measure", "counted", "is_homotopy", "element_violations",
           "signed_violations", "split_values"]

DEFAULT_TOLERANCE = 1e-3


def is_homotopy(plan: ConstraintPlan) -> bool:
    """Whether a constraint acts on constrained variables (γ) that projecting the model removes."""
    return plan.constraint.target.variables is not None


def counted(plans: Iterable[ConstraintPlan]) -> list[str]:
    """Names of the constraints a deployed model must meet: not penalties, not homotopy constraints."""
    return [p.key for p in plans if not p.constraint.is_penalty and not is_homotopy(p)]


def signed_violations(plan: ConstraintPlan, values: torch.Tensor,
                      slack: torch.Tensor | None) -> tuple[torch.Tensor, bool]:
    r"""The signed violation per element and whether it is an equality's.

    :math:`h - d`, :math:`g - b` (and :math:`a - g`), or :math:`|h| - u` with a slack; an inequality holds when
    it is ≤ 0, an equality at 0.
    """
    constraint = plan.constraint
    if plan.mode == "lagrangian" and plan.base is not None:
        return plan.violation(values, slack), plan.constraint_type == ConstraintType.EQUALITY
    # a constraint the formulation does not enforce ("none"): judged as declared, without slack
    raw = constraint.violation(values, torch.zeros_like(values)) if constraint.has_slack \
        else constraint.violation(values)
    return raw, constraint.is_equality


def element_violations(plan: ConstraintPlan, values: torch.Tensor, slack: torch.Tensor | None) -> torch.Tensor:
    r"""Per-element violation ≥ 0: :math:`|h|`, :math:`[g - b]_+` or, with a slack, :math:`[|h| - u]_+`."""
    raw, equality = signed_violations(plan, values, slack)
    return raw.abs() if equality else raw.clamp(min=0.0)


@dataclass
class Measurement:
    """Target values and violations of every (non-penalty) constraint over one split.

    Attributes:
        values: Per constraint, the target's values ``(L,)`` over the split.
        violations: Per constraint, the element violations ``≥ 0``.
        counted: The constraints a deployed model must meet (see :func:`counted`).
        tolerance: The verdict's tolerance τ.
    """

    values: dict[str, list[float]] = field(default_factory=dict)
    violations: dict[str, list[float]] = field(default_factory=dict)
    counted: list[str] = field(default_factory=list)
    tolerance: float = DEFAULT_TOLERANCE

    def max_violation(self) -> dict[str, float]:
        """Largest element violation per constraint."""
        return {k: max(v, default=0.0) for k, v in self.violations.items()}

    @property
    def worst(self) -> float:
        """Largest violation over the counted constraints (0 when none is counted)."""
        largest = self.max_violation()
        return max((largest[k] for k in self.counted if k in largest), default=0.0)

    @property
    def feasible(self) -> bool:
        """Every counted constraint's largest violation is ≤ τ (NaN is infeasible)."""
        return self.worst <= self.tolerance

    def columns(self, prefix: str) -> dict[str, float]:
        """History columns ``<prefix>/<constraint>/value[i]`` and ``<prefix>/<constraint>/violation[i]``."""
        out: dict[str, float] = {}
        for what, group in (("value", self.values), ("violation", self.violations)):
            for key, items in group.items():
                out.update({f"{prefix}/{key}/{what}[{i}]": v for i, v in enumerate(items)})
        return out

    def verdict(self) -> dict[str, Any]:
        """The JSON summary: ``feasible``, ``tolerance``, per-constraint ``max_violation`` and ``value``."""
        return {"feasible": self.feasible, "tolerance": self.tolerance, "counted": list(self.counted),
                "max_violation": self.max_violation(), "value": dict(self.values)}


def split_values(plans: list[ConstraintPlan], problem: Any, model: torch.nn.Module, loader: Any,
                  device: torch.device) -> dict[str, torch.Tensor]:
    """Batch-reading targets over the loader: weighted means, or ``from_totals`` of summed totals."""
    sums: dict[str, torch.Tensor] = {}
    count = 0
    reads_output = any("output" in p.constraint.target.reads for p in plans)
    for batch in loader:
        batch = to_device(batch, device)
        output = problem.objective.forward(model, batch) if reads_output else None
        n = batch_size(batch)
        for plan in plans:
            target = plan.constraint.target
            part = (target.totals(model, batch, output) if target.totals is not None
                    else target(model, batch, output).reshape(-1) * n).detach().reshape(-1)
            sums[plan.key] = part if plan.key not in sums else sums[plan.key] + part
        count += n
    out = {}
    for plan in plans:
        target = plan.constraint.target
        total = sums.get(plan.key)
        if total is None:
            continue
        out[plan.key] = target.from_totals(total) if target.from_totals is not None else total / max(count, 1)
    return out


@torch.no_grad()
def measure(solver: Any, model: torch.nn.Module, loader: Any = None, *,
            tolerance: float = DEFAULT_TOLERANCE) -> Measurement:
    """Evaluate every non-penalty constraint of ``solver``'s problem on ``model`` over ``loader``.

    Args:
        solver: The :class:`~constrained_eq.core.solver.engine.Solver` (its plans say how each constraint is enforced;
            its slacks u relax the resilient ones).
        model: The model to judge (the solver's, its averaged copy, …), in eval mode.
        loader: The split (validation or test); batch-reading targets are skipped without one.
        tolerance: The verdict's tolerance τ.

    Returns:
        Measurement: values, violations, counted constraints (read back to the host in one sync).
    """
    plans = [p for p in solver.plans if not p.constraint.is_penalty]
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    values = {p.key: p.constraint.target(model).reshape(-1) for p in plans if not p.constraint.target.needs_batch}
    batch_plans = [p for p in plans if p.constraint.target.needs_batch]
    if batch_plans and loader is not None:
        values.update(split_values(batch_plans, solver.problem, model, loader, device))
    violations = {p.key: element_violations(p, values[p.key], solver.slacks.get(p.key)) for p in plans
                  if p.key in values}
    keys = list(values)
    flat = [values[k].float().reshape(-1) for k in keys] + [violations[k].float().reshape(-1) for k in keys]
    host = torch.cat([t.to(device) for t in flat]).tolist() if flat else []
    sizes = [t.numel() for t in flat]
    chunks, start = [], 0
    for size in sizes:
        chunks.append(host[start:start + size])
        start += size
    measured = Measurement(dict(zip(keys, chunks[:len(keys)], strict=True)),
                           dict(zip(keys, chunks[len(keys):], strict=True)),
                           [k for k in counted(plans) if k in values], tolerance)
    return measured
