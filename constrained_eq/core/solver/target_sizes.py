"""The solver's dry run: evaluate every target once to learn its length L and check what it returns.

Each target must return a 1-D floating tensor of the model's dtype; one enforced by a multiplier must
have a gradient path to some parameter (else its multiplier grows with no effect); the objective must
return a scalar. The sizes are L per constraint (2L for a two-sided bound) and L per target.
"""

from __future__ import annotations

from typing import Any

import torch

from constrained_eq._utils.loaders import first_batch, is_loader
from constrained_eq.core.formulations.base import ConstraintPlan
from constrained_eq.core.problem.problem import ConstrainedProblem

__all__ = ["constraint_sizes"]


def constraint_sizes(problem: ConstrainedProblem, model: torch.nn.Module, plans: list[ConstraintPlan],
                     example_batch: Any, dtype: torch.dtype) -> tuple[dict[str, int], dict[str, int]]:
    """Evaluate each target once (dry run) to learn L and check shape and dtype.

    Returns:
        ``(sizes, target_sizes)``: per constraint key, the length of its violation vector (L, or 2L for
        a two-sided bound) and the length L of its target's values (each at least 1).

    Raises:
        ValueError: If a target reads the batch and no example batch is given, or a target or the objective
            returns something of the wrong shape, dtype or gradient path.
    """
    for plan in plans:
        if plan.constraint.target.prepare is not None:
            plan.constraint.target.prepare(model)
    if is_loader(example_batch):
        example_batch = first_batch(example_batch)  # the loader's shuffle order is left as it was
    output = _example_output(problem, model, plans, example_batch)
    sizes, target_sizes = {}, {}
    for plan in plans:
        values = _dry_run(model, plan, example_batch, output)
        plan.constraint.check_size(values.numel())
        _check_target_fits(problem, model, plan, values, example_batch, dtype)
        with torch.no_grad():  # L, or 2L for a two-sided bound
            size = plan.base(values.reshape(-1)).numel() if plan.base is not None else values.numel()
        sizes[plan.key] = max(size, 1)
        target_sizes[plan.key] = max(values.numel(), 1)
    _check_scalar_objective(problem, model, example_batch, output)
    return sizes, target_sizes


def _example_output(problem: ConstrainedProblem, model: torch.nn.Module, plans: list[ConstraintPlan],
                    example_batch: Any) -> Any:
    """The model's output on the example batch when some target reads the batch (else ``None``)."""
    if not any(p.constraint.target.needs_batch for p in plans):
        return None
    if example_batch is None:
        names = [p.key for p in plans if p.constraint.target.needs_batch]
        raise ValueError(
            f"Solver: constraints {names} have targets that read the batch or the output (declare "
            "Target(..., reads='parameters') for one that reads the model alone); pass "
            "example_batch=<a batch or the train loader> so their sizes are known before training"
        )
    with torch.no_grad():
        return problem.objective.forward(model, example_batch)


def _dry_run(model: torch.nn.Module, plan: ConstraintPlan, example_batch: Any, output: Any) -> torch.Tensor:
    """The target's values on the example, checked to be a 1-D floating tensor."""
    target = plan.constraint.target
    with torch.no_grad():
        values = target(model, example_batch, output) if target.needs_batch else target(model)
    if not isinstance(values, torch.Tensor) or not values.is_floating_point() or values.dim() > 1:
        got = (f"shape {tuple(values.shape)}, dtype {values.dtype}" if isinstance(values, torch.Tensor)
               else type(values).__name__)
        raise ValueError(
            f"Solver: expected the target {target.name!r} of constraint {plan.key!r} to return a 1-D "
            f"floating tensor of shape (L,) (got {got})"
        )
    return values


def _check_target_fits(problem: ConstrainedProblem, model: torch.nn.Module, plan: ConstraintPlan,
                       values: torch.Tensor, example_batch: Any, dtype: torch.dtype) -> None:
    """Refuse a target whose dtype differs from the model's, or (enforced by a multiplier) that no parameter moves.

    A multiplier on a value with no gradient path to any parameter grows without any effect on it.
    """
    target = plan.constraint.target
    if values.dtype != dtype:
        raise ValueError(f"Solver: expected the target {target.name!r} of constraint {plan.key!r} to return dtype "
                         f"{dtype} like the model's parameters (got {values.dtype}); cast it with .to({dtype})")
    if plan.mode != "lagrangian" or target.variables is not None:
        return
    with torch.enable_grad():
        output = problem.objective.forward(model, example_batch) if target.needs_batch else None
        moving = target(model, example_batch, output).requires_grad
    if not moving:
        raise ValueError(f"Solver: the target {target.name!r} of constraint {plan.key!r} has no gradient path to "
                         "any parameter (its value does not require grad): its multiplier would grow with no effect. "
                         "Compute it from the model's parameters or outputs, without .detach() or torch.no_grad()")


def _check_scalar_objective(problem: ConstrainedProblem, model: torch.nn.Module, example_batch: Any,
                            output: Any) -> None:
    """Refuse an objective that does not return a scalar on the example batch (when one is given)."""
    if example_batch is None:
        return
    with torch.no_grad():
        if output is None:
            output = problem.objective.forward(model, example_batch)
        loss = problem.objective(output, example_batch)
    if not isinstance(loss, torch.Tensor) or loss.numel() != 1:
        got = f"shape {tuple(loss.shape)}" if isinstance(loss, torch.Tensor) else type(loss).__name__
        raise ValueError(f"Solver: expected the objective to return a scalar (a 0-d tensor) (got {got}); reduce "
                         "it over the batch, e.g. with .mean()")
