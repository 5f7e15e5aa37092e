"""What training shows and watches at its throttled logging points: progress, divergence, per-element columns.

Only these points read values back to the host (one sync each). Divergence is judged by the multipliers and
the objective, never by a target's magnitude: a max|λ| beyond ``divergence_limit`` or an objective beyond
``objective_limit`` times its first logged value (or either non-finite) raises :class:`DivergenceError`
naming the learning rates to lower; a growth of max|λ| by :data:`DIVERGENCE_GROWTH` over the run warns.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Mapping

import torch
from cooper.utils import ConstraintType

from constrained_eq.core.solver.engine import Solver, StepRecord
from constrained_eq.core.solver.split_feasibility import is_homotopy

__all__ = ["DivergenceError", "DIVERGENCE_GROWTH", "constraint_columns", "magnitudes", "postfix",
           "check_divergence"]

DIVERGENCE_GROWTH = 1e3  # warn when max|λ| grows this much over the run


class DivergenceError(FloatingPointError):
    """The multipliers λ grew without bound or the objective blew up; the last checkpoint is intact."""


def constraint_columns(record: StepRecord | None) -> dict[str, float]:
    """Per-element γ (values), λ and u of every constraint as ``<key>.<what>.<i>`` columns (one sync)."""
    if record is None:
        return {}
    names, tensors = [], []
    for what, group in (("value", record.values), ("lambda", record.multipliers), ("slack", record.slacks)):
        for key, tensor in group.items():
            flat = tensor.detach().reshape(-1).float()
            names += [f"{key}.{what}.{i}" for i in range(flat.numel())]
            tensors.append(flat)
    if not tensors:
        return {}
    return dict(zip(names, torch.cat([t.to(tensors[0].device) for t in tensors]).tolist(), strict=True))


def magnitudes(solver: Solver, record: StepRecord) -> tuple[float, dict[str, float], dict[str, float]]:
    """Loss, the batch's largest violation (max|γ| for a homotopy constraint) and max|λ| per constraint (one sync).

    The violation is read as :func:`~constrained_eq.core.solver.split_feasibility.element_violations` reads it:
    ``|h|`` for an equality, ``[g − b]₊`` for an inequality.
    """
    zero = record.loss.new_zeros(())
    plans = {p.key: p for p in solver.plans}
    shown = {}
    for key, values in record.values.items():
        plan = plans.get(key)
        if plan is None or not values.numel() or plan.constraint.is_penalty:
            continue
        if is_homotopy(plan):
            shown[key] = values.detach().abs().max().float()
        elif key in record.violations:
            raw = record.violations[key].detach()
            equality = plan.constraint_type == ConstraintType.EQUALITY
            shown[key] = (raw.abs() if equality else raw.clamp(min=0)).max().float()
    lambdas = {k: m.abs().max().float() for k, m in record.multipliers.items() if m.numel()}
    values = torch.stack([record.loss.float().to(zero.device), *(t.to(zero.device) for t in shown.values()),
                          *(t.to(zero.device) for t in lambdas.values())]).tolist()
    return (values[0], dict(zip(shown, values[1:1 + len(shown)], strict=True)),
            dict(zip(lambdas, values[1 + len(shown):], strict=True)))


def postfix(solver: Solver, loss: float, shown: Mapping[str, float], lambdas: Mapping[str, float]) -> dict[str, str]:
    """Progress-bar fields named by constraint: ``<name>: |γ|=…`` (homotopy) or ``viol=…``, then ``λ=…``."""
    homotopy = {p.key for p in solver.plans if is_homotopy(p)}
    out = {"loss": f"{loss:.4g}"}
    for key in dict.fromkeys([*shown, *lambdas]):
        parts = []
        if key in shown:
            parts.append(f"{'max|γ|' if key in homotopy else 'viol'}={shown[key]:.3g}")
        if key in lambdas:
            parts.append(f"λ={lambdas[key]:.3g}")
        out[key] = " ".join(parts)
    return out


def _learning_rates(solver: Solver) -> str:
    lrs = [group["lr"] for opt in getattr(solver.optimizer, "primal_optimizers", []) for group in opt.param_groups]
    return f"dual_lr={solver.dual_lr:g}, variable_lr/primal lr={[float(f'{lr:g}') for lr in lrs]}"


def check_divergence(solver: Solver, loss: float, lambdas: Mapping[str, float], state: dict,
                      limit: float | None, step: int, epoch: int, checkpoint: Callable[[], str],
                      objective_limit: float | None = None) -> None:
    """Judge divergence by the multipliers and the objective, never by a target's magnitude.

    Raises :class:`DivergenceError` when a max|λ| is non-finite or above ``limit`` (λ grew without bound),
    or the objective is non-finite or above ``objective_limit · max(1, |J₀ at the first logging point|)``
    (blow-up);
    warns once when max|λ| grows ``DIVERGENCE_GROWTH``× over the run. A constraint value of any size
    with λ = 0 is a satisfied constraint, not a divergence.
    """
    if limit is None and objective_limit is None:
        return
    advice = (f"lower the learning rates ({_learning_rates(solver)}): 'dual_lr' first, then 'variable_lr'. "
              f"{checkpoint()}")
    for key, value in lambdas.items():
        if limit is not None and (not math.isfinite(value) or value > limit):
            raise DivergenceError(f"step {step} (epoch {epoch}): the multipliers diverged: max|λ| of constraint "
                                  f"{key!r} is {value:.3g} (limit {limit:g}); {advice}")
    if state.get("objective_baseline") is None and math.isfinite(loss):
        state["objective_baseline"] = abs(loss)
    scale = max(1.0, state.get("objective_baseline") or 0.0)
    if objective_limit is not None and (not math.isfinite(loss) or abs(loss) > objective_limit * scale):
        raise DivergenceError(f"step {step} (epoch {epoch}): the objective blew up: {loss:.3g} (limit "
                              f"{objective_limit:g} × "
                              f"max(1, first logged |J₀| = {state.get('objective_baseline') or 0.0:.3g})); {advice}")
    current = max(lambdas.values(), default=0.0)
    if state.get("dual_baseline") is None:
        state["dual_baseline"] = current
        return
    if not state.get("dual_growth_warned") and current > DIVERGENCE_GROWTH * max(state["dual_baseline"], 1.0):
        state["dual_growth_warned"] = True
        warnings.warn(f"step {step} (epoch {epoch}): max|λ| grew from {state['dual_baseline']:.3g} to "
                      f"{current:.3g} over the run; if it keeps growing lower 'dual_lr' or 'variable_lr' "
                      f"({_learning_rates(solver)})", RuntimeWarning, stacklevel=3)
