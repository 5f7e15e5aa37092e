"""Building the optimizers of a :class:`~constrained_eq.engine.Solver` and Cooper's update scheme.

Three parameter groups, three optimizers: θ (yours), the constrained variables γ and slacks u
(plain SGD by default), and the multipliers λ (SGD ascent by default).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import cooper
import torch

if TYPE_CHECKING:
    from constrained_eq.engine import Solver

__all__ = ["SCHEMES", "build", "roll_kwargs"]


class FusedSimultaneousOptimizer(cooper.optim.SimultaneousOptimizer):
    """Cooper's simultaneous update with the primal and dual backward passes in one autograd call.

    The primal Lagrangian (gradients for θ, γ, u) and the dual Lagrangian (gradients for λ, built on
    detached violations) have disjoint graphs, so ``torch.autograd.backward([primal, dual])`` gives
    exactly the gradients of Cooper's two ``backward()`` calls while entering the autograd engine once.
    Everything else (the CMP state, both Lagrangians, the steps) is Cooper's own.
    """

    def roll(self, compute_cmp_state_kwargs: dict | None = None) -> cooper.optim.RollOut:
        self.zero_grad()
        cmp_state = self.cmp.compute_cmp_state(**(compute_cmp_state_kwargs or {}))
        primal_store = cmp_state.compute_primal_lagrangian()
        dual_store = cmp_state.compute_dual_lagrangian()
        roots = [store.lagrangian for store in (primal_store, dual_store) if store.lagrangian is not None]
        torch.autograd.backward(roots)
        self.primal_step()
        self.dual_step()
        return cooper.optim.RollOut(cmp_state.loss, cmp_state, primal_store, dual_store)


SCHEMES: dict[str, type] = {
    "simultaneous": FusedSimultaneousOptimizer,
    "alternating_primal_dual": cooper.optim.AlternatingPrimalDualOptimizer,
    "alternating_dual_primal": cooper.optim.AlternatingDualPrimalOptimizer,
    "extrapolation": cooper.optim.ExtrapolationConstrainedOptimizer,
}

_HOOKED: dict[type, type] = {}


def _hooked(cls: type) -> type:
    """Subclass a Cooper optimizer so that ``before_primal_step()`` runs between backward and the step."""
    if cls not in _HOOKED:

        class Hooked(cls):
            def __init__(self, *args: Any, before_primal_step: Callable[[], None], **kwargs: Any) -> None:
                self.before_primal_step = before_primal_step
                super().__init__(*args, **kwargs)

            def primal_step(self) -> None:
                self.before_primal_step()
                super().primal_step()

            def primal_extrapolation_step(self) -> None:
                self.before_primal_step()
                super().primal_extrapolation_step()

        Hooked.__name__ = Hooked.__qualname__ = cls.__name__
        _HOOKED[cls] = Hooked
    return _HOOKED[cls]


def _is_optimizer(obj: Any) -> bool:
    return isinstance(obj, torch.optim.Optimizer)


def _remove_parameters(optimizer: torch.optim.Optimizer, removed: set[int]) -> None:
    """Take ``removed`` parameters out of a user's optimizer before its first step."""
    for group in optimizer.param_groups:
        kept = []
        for parameter in group["params"]:
            if id(parameter) in removed:
                if optimizer.state.get(parameter):
                    raise ValueError(
                        "Solver: the primal optimizer already holds state for a constrained variable (γ); "
                        "build the Solver before stepping the optimizer"
                    )
            else:
                kept.append(parameter)
        group["params"] = kept
    optimizer.param_groups[:] = [g for g in optimizer.param_groups if g["params"]]


def _primal(solver: Solver, primal_optimizer: Any, keep_variables: bool) -> torch.optim.Optimizer | None:
    removed = set() if keep_variables else {id(v) for v in solver.variables}
    params = [p for p in solver.model.parameters() if id(p) not in removed]
    extrapolation = solver.scheme == "extrapolation"
    if not params and not _is_optimizer(primal_optimizer):
        return None
    if primal_optimizer is None:
        cls = cooper.optim.ExtraAdam if extrapolation else torch.optim.Adam
        return cls(params, lr=1e-3)
    if _is_optimizer(primal_optimizer):
        _remove_parameters(primal_optimizer, removed)
        if not primal_optimizer.param_groups:
            return None
        optimizer = primal_optimizer
    elif callable(primal_optimizer):
        optimizer = primal_optimizer(params)
    else:
        raise TypeError(
            "Solver: expected 'primal_optimizer' to be a torch.optim.Optimizer or a factory params -> Optimizer "
            f"(got {type(primal_optimizer).__name__})"
        )
    if extrapolation and not hasattr(optimizer, "extrapolation"):
        raise ValueError(
            "Solver: constrained_optimizer='extrapolation' needs extrapolation-capable optimizers; use "
            "cooper.optim.ExtraAdam or cooper.optim.ExtraSGD as 'primal_optimizer'"
        )
    return optimizer


def _variables(solver: Solver, variable_optimizer: Any, variable_lr: float | None,
               primal_lr: float | None) -> torch.optim.Optimizer | None:
    trained = [] if variable_optimizer == "primal" or solver.formulation.expects_schedule else solver.variables
    params = [*trained, *solver.slacks.values()]
    if not params:
        return None
    if callable(variable_optimizer) and not isinstance(variable_optimizer, str):
        return variable_optimizer(params)
    lr = variable_lr if variable_lr is not None else primal_lr
    if lr is None:
        raise ValueError("Solver: the model has no primal parameters besides the constrained variables; "
                         "pass variable_lr=... (the step size of γ and u)")
    if isinstance(lr, bool) or not isinstance(lr, int | float) or not lr > 0 or lr == float("inf"):
        raise ValueError(f"Solver: expected 'variable_lr' to be a finite number > 0 (got {lr!r})")
    cls = cooper.optim.ExtraSGD if solver.scheme == "extrapolation" else torch.optim.SGD
    return cls(params, lr=float(lr))


def check_dual_maximize(optimizer: torch.optim.Optimizer) -> None:
    """Refuse a dual optimizer that would minimise."""
    for index, group in enumerate(optimizer.param_groups):
        if not group.get("maximize", False):
            raise ValueError(
                f"Solver: dual optimizer param_group {index} has maximize=False; build it with maximize=True, "
                "e.g. torch.optim.SGD(params, lr=1e-2, maximize=True)"
            )


def _dual(solver: Solver, dual_optimizer: Any) -> torch.optim.Optimizer | None:
    params = list(solver.cmp.dual_parameters())
    if not params:
        return None
    if dual_optimizer is None:
        cls = cooper.optim.ExtraSGD if solver.scheme == "extrapolation" else torch.optim.SGD
        optimizer = cls(params, lr=solver.dual_lr, maximize=True)
    elif _is_optimizer(dual_optimizer):
        raise TypeError(
            "Solver: the multipliers are created by the Solver, so 'dual_optimizer' must be a factory "
            "params -> Optimizer, e.g. lambda params: torch.optim.SGD(params, lr=1e-3, maximize=True)"
        )
    elif callable(dual_optimizer):
        optimizer = dual_optimizer(params)
    else:
        raise TypeError(f"Solver: expected 'dual_optimizer' to be a factory params -> Optimizer "
                        f"(got {dual_optimizer!r})")
    check_dual_maximize(optimizer)
    return optimizer


def build(solver: Solver, primal_optimizer: Any, dual_optimizer: Any, variable_optimizer: Any,
          variable_lr: float | None) -> cooper.optim.CooperOptimizer:
    """Build the primal, variable and dual optimizers and wrap them in Cooper's scheme."""
    if not (variable_optimizer in ("sgd", "primal") or callable(variable_optimizer)):
        raise ValueError(
            f"Solver: expected 'variable_optimizer' to be 'sgd', 'primal' or a factory params -> Optimizer "
            f"(got {variable_optimizer!r})"
        )
    given_lr = primal_optimizer.param_groups[0]["lr"] if _is_optimizer(primal_optimizer) else None
    primal = _primal(solver, primal_optimizer, keep_variables=variable_optimizer == "primal")
    primal_lr = primal.param_groups[0]["lr"] if primal is not None else given_lr
    variables = _variables(solver, variable_optimizer, variable_lr, primal_lr)
    primal_optimizers = [o for o in (primal, variables) if o is not None]
    if not primal_optimizers:
        raise ValueError("Solver: nothing to optimise: the model has no trainable parameters and no slacks")
    dual = _dual(solver, dual_optimizer)
    if dual is None:
        cls = _hooked(cooper.optim.UnconstrainedOptimizer)
        return cls(solver.cmp, primal_optimizers, before_primal_step=solver.before_primal_step_)
    cls = _hooked(SCHEMES[solver.scheme])
    return cls(solver.cmp, primal_optimizers, dual, before_primal_step=solver.before_primal_step_)


def roll_kwargs(optimizer: cooper.optim.CooperOptimizer, model: torch.nn.Module, batch: Any) -> dict[str, Any]:
    """Keyword arguments of Cooper's ``roll()`` for ``optimizer``."""
    kwargs: dict[str, Any] = {"compute_cmp_state_kwargs": {"model": model, "batch": batch}}
    if isinstance(optimizer, cooper.optim.AlternatingPrimalDualOptimizer):
        kwargs["compute_violations_kwargs"] = {"model": model, "batch": batch}
    return kwargs
