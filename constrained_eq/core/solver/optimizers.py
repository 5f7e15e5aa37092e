"""Building the optimizers of a :class:`~constrained_eq.core.solver.engine.Solver` and Cooper's update scheme.

Three parameter groups, three optimizers: θ (yours), the constrained variables γ and slacks u
(plain SGD by default), and the multipliers λ (SGD ascent by default). Everything here takes plain
arguments (the model, γ, u, the Cooper problem, the scheme's name); nothing reads the Solver.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import cooper
import torch

from constrained_eq.core.solver import plain_steps
from constrained_eq.core.solver.dual_optimizers import NuPI, resolve_dual_optimizer

__all__ = ["SCHEMES", "NAMED", "build", "extrapolating", "roll_kwargs"]


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
    """Subclass a Cooper optimizer so that ``before_primal_step()`` runs between backward and the step.

    Its steps and ``zero_grad`` are Cooper's, with plain SGD (γ, u, λ by default) stepped by
    :mod:`constrained_eq.core.solver.plain_steps` (the same update, without ``torch.optim``'s per-call cost).
    """
    if cls not in _HOOKED:

        class Hooked(cls):
            def __init__(self, *args: Any, before_primal_step: Callable[[], None], **kwargs: Any) -> None:
                self.before_primal_step = before_primal_step
                super().__init__(*args, **kwargs)

            def zero_grad(self) -> None:
                plain_steps.zero_grad_([*self.primal_optimizers, *(self.dual_optimizers or [])])

            def primal_step(self) -> None:
                self.before_primal_step()
                plain_steps.step_(self.primal_optimizers)

            @torch.no_grad()
            def dual_step(self) -> None:  # Cooper's: step the dual optimizers, then project the multipliers
                plain_steps.step_(self.dual_optimizers)
                for multiplier in self.cmp.multipliers():
                    multiplier.post_step_()

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


NAMED: dict[str, type[torch.optim.Optimizer]] = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW,
                                                  "sgd": torch.optim.SGD}
_EXTRA: dict[type, tuple[type, tuple[str, ...]]] = {
    torch.optim.SGD: (cooper.optim.ExtraSGD, ("lr", "momentum", "dampening", "weight_decay", "nesterov", "maximize")),
    torch.optim.Adam: (cooper.optim.ExtraAdam, ("lr", "betas", "eps", "weight_decay", "amsgrad", "maximize")),
}


def extrapolating(optimizer: torch.optim.Optimizer, what: str) -> torch.optim.Optimizer:
    """The extrapolation counterpart of an optimizer the Solver built (SGD → ExtraSGD, Adam → ExtraAdam).

    The per-group hyperparameters carry over; ones the counterpart lacks (``foreach``, …) are dropped.
    """
    if hasattr(optimizer, "extrapolation"):
        return optimizer
    if type(optimizer) not in _EXTRA:
        raise ValueError(
            f"Solver: constrained_optimizer='extrapolation' needs an extrapolation-capable {what}; "
            f"{type(optimizer).__name__} has no counterpart in Cooper (ExtraSGD, ExtraAdam); use 'sgd' or 'adam'"
        )
    cls, keys = _EXTRA[type(optimizer)]
    return cls([{k: v for k, v in g.items() if k == "params" or k in keys} for g in optimizer.param_groups])


def _check_instance_extrapolates(optimizer: torch.optim.Optimizer, where: str) -> None:
    if not hasattr(optimizer, "extrapolation"):
        counterpart = _EXTRA.get(type(optimizer), (None,))[0]
        fix = f"cooper.optim.{counterpart.__name__}(...)" if counterpart else "cooper.optim.ExtraAdam/ExtraSGD(...)"
        raise ValueError(
            f"Solver: constrained_optimizer='extrapolation' needs extrapolation-capable optimizers, but {where} is an "
            f"instance of {type(optimizer).__name__}; pass {fix}, or a name ('adam', 'sgd') or a factory "
            "params -> Optimizer, which the Solver turns into its extrapolation counterpart"
        )


def _primal_list(optimizers: list[Any], removed: set[int], scheme: str) -> list[torch.optim.Optimizer]:
    """Several primal optimizers, e.g. SGD on one block of θ and Adam on another (as Cooper allows)."""
    out, owner = [], {}
    for index, optimizer in enumerate(optimizers):
        if not _is_optimizer(optimizer):
            raise TypeError(f"Solver: expected 'primal_optimizer[{index}]' to be a torch.optim.Optimizer "
                            f"(got {type(optimizer).__name__}); a list holds built optimizers, one per block of θ")
        for group in optimizer.param_groups:
            for parameter in group["params"]:
                if id(parameter) in owner:
                    raise ValueError(f"Solver: a parameter of shape {tuple(parameter.shape)} is in both "
                                     f"'primal_optimizer[{owner[id(parameter)]}]' and 'primal_optimizer[{index}]'; "
                                     "give each parameter to one optimizer")
                owner[id(parameter)] = index
        if scheme == "extrapolation":
            _check_instance_extrapolates(optimizer, f"'primal_optimizer[{index}]'")
        _remove_parameters(optimizer, removed)
        if optimizer.param_groups:
            out.append(optimizer)
    return out


def _primal(model: torch.nn.Module, variables: list[torch.nn.Parameter], scheme: str, primal_optimizer: Any,
            keep_variables: bool, primal_lr: float | None) -> list[torch.optim.Optimizer]:
    removed = set() if keep_variables else {id(v) for v in variables}
    params = [p for p in model.parameters() if id(p) not in removed]
    extrapolation = scheme == "extrapolation"
    if isinstance(primal_optimizer, list | tuple):
        return _primal_list(list(primal_optimizer), removed, scheme)
    if not params and not _is_optimizer(primal_optimizer):
        return []
    if primal_optimizer is None:
        primal_optimizer = "adam"
    if isinstance(primal_optimizer, str):
        if primal_optimizer not in NAMED:
            choices = ", ".join(repr(k) for k in NAMED)
            raise ValueError(f"Solver: expected 'primal_optimizer' to be one of {choices}, an optimizer, a list of "
                             f"optimizers or a factory params -> Optimizer (got {primal_optimizer!r})")
        optimizer = NAMED[primal_optimizer](params, lr=1e-3 if primal_lr is None else primal_lr)
    elif _is_optimizer(primal_optimizer):
        if extrapolation:
            _check_instance_extrapolates(primal_optimizer, "'primal_optimizer'")
        _remove_parameters(primal_optimizer, removed)
        return [primal_optimizer] if primal_optimizer.param_groups else []
    elif callable(primal_optimizer):
        optimizer = primal_optimizer(params)
    else:
        raise TypeError(
            "Solver: expected 'primal_optimizer' to be a name, a torch.optim.Optimizer, a list of them or a factory "
            f"params -> Optimizer (got {type(primal_optimizer).__name__})"
        )
    return [extrapolating(optimizer, "primal optimizer") if extrapolation else optimizer]


def _variables(variables: list[torch.nn.Parameter], slacks: list[torch.nn.Parameter], scheme: str, frozen: bool,
               variable_optimizer: Any, variable_lr: float | None,
               primal_lr: float | None) -> torch.optim.Optimizer | None:
    """The optimizer of γ (unless ``frozen`` or kept in the primal optimizer) and the slacks u."""
    trained = [] if variable_optimizer == "primal" or frozen else variables
    params = [*trained, *slacks]
    if not params:
        return None
    if callable(variable_optimizer) and not isinstance(variable_optimizer, str):
        optimizer = variable_optimizer(params)
        return extrapolating(optimizer, "variable optimizer") if scheme == "extrapolation" else optimizer
    lr = variable_lr if variable_lr is not None else primal_lr
    if lr is None:
        raise ValueError("Solver: the model has no primal parameters besides the constrained variables; "
                         "pass variable_lr=... (the step size of γ and u)")
    if isinstance(lr, bool) or not isinstance(lr, int | float) or not lr > 0 or lr == float("inf"):
        raise ValueError(f"Solver: expected 'variable_lr' to be a finite number > 0 (got {lr!r})")
    cls = cooper.optim.ExtraSGD if scheme == "extrapolation" else torch.optim.SGD
    return cls(params, lr=float(lr))


def check_dual_maximize(optimizer: torch.optim.Optimizer) -> None:
    """Refuse a dual optimizer that would minimise."""
    for index, group in enumerate(optimizer.param_groups):
        if not group.get("maximize", False):
            raise ValueError(
                f"Solver: dual optimizer param_group {index} has maximize=False; build it with maximize=True, "
                "e.g. torch.optim.SGD(params, lr=1e-2, maximize=True)"
            )


def _dual(params: list[torch.nn.Parameter], scheme: str, dual_lr: float, dual_optimizer: Any,
          eta_p: float | None = None, primal_lr: float | None = None) -> torch.optim.Optimizer | None:
    """The optimizer of the multipliers λ (``None`` when there are none)."""
    if not params:
        return None
    named = resolve_dual_optimizer(dual_optimizer) if isinstance(dual_optimizer, str | NuPI) else None
    if named is not None and scheme == "extrapolation":
        raise ValueError("Solver: dual_optimizer='nupi' has no extrapolation step; use the 'simultaneous' or an "
                         "alternating constrained_optimizer")
    if named is not None:
        optimizer = named(params, dual_lr, eta_p, primal_lr=primal_lr)
    elif dual_optimizer in (None, "sgd"):
        cls = cooper.optim.ExtraSGD if scheme == "extrapolation" else torch.optim.SGD
        optimizer = cls(params, lr=dual_lr, maximize=True)
    elif _is_optimizer(dual_optimizer):
        raise TypeError(
            "Solver: the multipliers are created by the Solver, so 'dual_optimizer' must be a factory "
            "params -> Optimizer, e.g. lambda params: torch.optim.SGD(params, lr=1e-3, maximize=True)"
        )
    elif callable(dual_optimizer):
        optimizer = dual_optimizer(params)
        if scheme == "extrapolation":
            optimizer = extrapolating(optimizer, "dual optimizer")
    else:
        raise TypeError(f"Solver: expected 'dual_optimizer' to be a factory params -> Optimizer "
                        f"(got {dual_optimizer!r})")
    check_dual_maximize(optimizer)
    return optimizer


def build(cmp: cooper.ConstrainedMinimizationProblem, model: torch.nn.Module,
          variables: list[torch.nn.Parameter], slacks: list[torch.nn.Parameter], *, scheme: str, dual_lr: float,
          freeze_variables: bool, before_primal_step: Callable[[], None], primal_optimizer: Any,
          dual_optimizer: Any, variable_optimizer: Any, variable_lr: float | None,
          primal_lr: float | None = None) -> tuple[cooper.optim.CooperOptimizer, torch.optim.Optimizer | None]:
    """Build the primal, variable and dual optimizers and wrap them in Cooper's ``scheme``.

    Args:
        cmp: The Cooper problem (its multipliers are the dual parameters).
        model: The model; its parameters but ``variables`` are θ.
        variables: The constrained variables γ.
        slacks: The slacks u.
        scheme: A key of :data:`SCHEMES`.
        dual_lr: η_d of the default (SGD) dual optimizer.
        freeze_variables: γ is set from outside (the ``schedule`` formulation) and gets no optimizer.
        before_primal_step: Called between backward and every primal step.
        primal_optimizer: As given to the :class:`~constrained_eq.core.solver.engine.Solver` (so are the next four).
        dual_optimizer: The dual optimizer's name, NuPI or factory.
        variable_optimizer: ``"sgd"``, ``"primal"`` or a factory.
        variable_lr: η_p of the SGD on γ and u.
        primal_lr: Learning rate of a primal optimizer given by name.

    Returns:
        Cooper's optimizer and the optimizer of γ and u (``None`` when there is none).
    """
    if not (variable_optimizer in ("sgd", "primal") or callable(variable_optimizer)):
        raise ValueError(
            f"Solver: expected 'variable_optimizer' to be 'sgd', 'primal' or a factory params -> Optimizer "
            f"(got {variable_optimizer!r})"
        )
    given_lr = _given_lr(primal_optimizer, primal_lr)  # read before the γ are removed from given optimizers
    primal = _primal(model, variables, scheme, primal_optimizer, variable_optimizer == "primal", primal_lr)
    first_lr = primal[0].param_groups[0]["lr"] if primal else given_lr
    variable_opt = _variables(variables, slacks, scheme, freeze_variables, variable_optimizer, variable_lr, first_lr)
    primal_optimizers = [*primal, *([variable_opt] if variable_opt is not None else [])]
    if not primal_optimizers:
        raise ValueError("Solver: nothing to optimise: the model has no trainable parameters and no slacks")
    plain = variable_opt is not None and type(variable_opt) is torch.optim.SGD and variables
    eta_p = variable_opt.param_groups[0]["lr"] if plain else None
    dual = _dual(list(cmp.dual_parameters()), scheme, dual_lr, dual_optimizer, eta_p, first_lr)
    if dual is None:
        cls = _hooked(cooper.optim.UnconstrainedOptimizer)
        return cls(cmp, primal_optimizers, before_primal_step=before_primal_step), variable_opt
    cls = _hooked(SCHEMES[scheme])
    return cls(cmp, primal_optimizers, dual, before_primal_step=before_primal_step), variable_opt


def _given_lr(primal_optimizer: Any, primal_lr: float | None) -> float | None:
    """The first learning rate of given primal optimizer instances, else ``primal_lr``."""
    given = [primal_optimizer] if _is_optimizer(primal_optimizer) else primal_optimizer
    if isinstance(given, list | tuple) and given and _is_optimizer(given[0]) and given[0].param_groups:
        return given[0].param_groups[0]["lr"]
    return primal_lr


def roll_kwargs(optimizer: cooper.optim.CooperOptimizer, model: torch.nn.Module, batch: Any) -> dict[str, Any]:
    """Keyword arguments of Cooper's ``roll()`` for ``optimizer``."""
    kwargs: dict[str, Any] = {"compute_cmp_state_kwargs": {"model": model, "batch": batch}}
    if isinstance(optimizer, cooper.optim.AlternatingPrimalDualOptimizer):
        kwargs["compute_violations_kwargs"] = {"model": model, "batch": batch}
    return kwargs
