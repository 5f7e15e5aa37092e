r"""Learning-rate schedules: the rates of epoch e are η_0 f(e, E), set by the :class:`LRScheduler` callback.

``training.scheduler`` sets the primal learning rate of epoch :math:`e` to
:math:`\eta_e = \eta_0\, f(e, E)` (:math:`E` = ``training.epochs``), ``training.variable_scheduler``
does the same for the step size of γ and u (the variable optimizer). The factors are closed forms of
the epoch, so a resumed run continues on the same schedule:

================  ==========================================================  =====================
name              factor :math:`f(e, E)`                                      options
================  ==========================================================  =====================
``cosine``        :math:`m + (1 - m)\,\tfrac12(1 + \cos(\pi e / E))`          ``min_factor`` m (0)
``step``          :math:`\gamma^{\lfloor e / s \rfloor}`                      ``step_size`` s, ``gamma`` (0.1)
``multistep``     :math:`\gamma^{\#\{k:\ e \ge e_k\}}`                        ``milestones`` e_k, ``gamma`` (0.1)
``exponential``   :math:`\gamma^{e}`                                          ``gamma``
``pkg.mod:fn``    ``fn(epoch, epochs, **options)``                            your own
================  ==========================================================  =====================

Each epoch's ``history.csv`` row records ``lr.primal`` / ``lr.variables``, the rates that epoch used.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Mapping
from typing import Any

import torch

from constrained_eq.training.callbacks import Callback

__all__ = ["SCHEDULES", "resolve_schedule", "LRSchedule", "LRScheduler", "split_optimizers"]


def cosine(epoch: int, epochs: int, min_factor: float = 0.0) -> float:
    """Cosine annealing from 1 at epoch 0 to ``min_factor`` at epoch ``epochs``."""
    return min_factor + (1.0 - min_factor) * 0.5 * (1.0 + math.cos(math.pi * epoch / epochs))


def step(epoch: int, epochs: int, step_size: int, gamma: float = 0.1) -> float:
    """Multiply by ``gamma`` every ``step_size`` epochs."""
    return gamma ** (epoch // step_size)


def multistep(epoch: int, epochs: int, milestones: list[int], gamma: float = 0.1) -> float:
    """Multiply by ``gamma`` at each epoch of ``milestones``."""
    return gamma ** sum(epoch >= m for m in milestones)


def exponential(epoch: int, epochs: int, gamma: float) -> float:
    """Multiply by ``gamma`` every epoch."""
    return gamma**epoch


SCHEDULES: dict[str, Callable[..., float]] = {"cosine": cosine, "step": step, "multistep": multistep,
                                              "exponential": exponential}


def resolve_schedule(name: str, options: Mapping[str, Any], epochs: int) -> Callable[[int], float]:
    """The factor ``f(e)`` of schedule ``name`` with ``options`` over ``epochs`` epochs.

    Raises:
        ValueError: On an unknown name, options the schedule does not take, or a factor that is not a
            finite number ≥ 0 at some epoch.
    """
    from constrained_eq._utils.import_path import ImportPathError, check_call, is_import_path, load_object

    if is_import_path(name):
        fn = load_object(name, "schedule")
        if not callable(fn):
            raise ImportPathError(f"Expected the schedule {name!r} to be a function fn(epoch, epochs, **options)")
        check_call(fn, name, "schedule", 0, epochs, **options)
    elif name in SCHEDULES:
        fn = SCHEDULES[name]
        try:
            inspect.signature(fn).bind(0, epochs, **options)
        except TypeError as err:
            raise ValueError(f"schedule {name!r} takes options {list(inspect.signature(fn).parameters)[2:]} "
                             f"({err})") from None
    else:
        raise ValueError(f"Expected a schedule among {', '.join(map(repr, SCHEDULES))} or an import path "
                         f"'package.module:function' (got {name!r})")
    for epoch in range(epochs):
        try:
            factor = fn(epoch, epochs, **options)
        except Exception as err:  # noqa: BLE001 (the options are wrong for this schedule: say how)
            raise ValueError(f"schedule {name!r} failed at epoch {epoch}: {type(err).__name__}: {err}") from None
        if isinstance(factor, bool) or not isinstance(factor, int | float) or not math.isfinite(factor) \
                or factor < 0:
            raise ValueError(f"Expected schedule {name!r} to give a finite factor ≥ 0 at every epoch "
                             f"(got {factor!r} at epoch {epoch})")
    return lambda epoch: float(fn(epoch, epochs, **options))


class LRSchedule:
    r"""Set ``optimizer``'s learning rates to :math:`\eta_0 f(e)` for epoch :math:`e`.

    :math:`\eta_0` is read when the schedule is made (the optimizer's rates as built from the file).
    A rate held in a tensor (``Solver(compile=True)``) is written in place, so a compiled step does not
    recompile.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, factor: Callable[[int], float]) -> None:
        self.optimizer, self.factor = optimizer, factor
        self.base = [float(group["lr"]) for group in optimizer.param_groups]

    def set_epoch(self, epoch: int) -> None:
        """Write the rates of ``epoch`` into the optimizer's parameter groups."""
        for group, base in zip(self.optimizer.param_groups, self.base, strict=True):
            if isinstance(group["lr"], torch.Tensor):
                group["lr"].fill_(base * self.factor(epoch))
            else:
                group["lr"] = base * self.factor(epoch)


def split_optimizers(solver: Any) -> tuple[list[torch.optim.Optimizer], torch.optim.Optimizer | None]:
    """The solver's optimizers of θ, and its optimizer of γ and u (``None`` when γ is in θ's optimizer)."""
    owned = {id(v) for v in solver.variables} | {id(u) for u in solver.slacks.values()}
    primal, variables = [], None
    for optimizer in solver.optimizer.primal_optimizers:
        params = [p for group in optimizer.param_groups for p in group["params"]]
        if params and all(id(p) in owned for p in params):
            variables = optimizer
        else:
            primal.append(optimizer)
    return primal, variables




class LRScheduler(Callback):
    r"""Callback: the rates of ``optimizers`` follow :math:`\eta_0 f(e)`; each epoch's row gets ``lr.<name>``.

    At the end of epoch :math:`e` the row records the rate that epoch used (of the first optimizer's first
    group) and the rates of epoch :math:`e + 1` are set. :math:`\eta_0` is each group's rate when the
    scheduler is made.

    Args:
        optimizers: One optimizer or several (e.g. one per ``optimizer.groups`` block), all on one schedule.
        factor: :math:`f(e)`, e.g. from :func:`resolve_schedule`.
        name: The column's suffix: ``"primal"`` (θ) or ``"variables"`` (γ and u).
    """

    def __init__(self, optimizers: torch.optim.Optimizer | list[torch.optim.Optimizer],
                 factor: Callable[[int], float], name: str = "primal") -> None:
        optimizers = optimizers if isinstance(optimizers, list) else [optimizers]
        self.schedules = [LRSchedule(optimizer, factor) for optimizer in optimizers]
        self.name = name

    def on_epoch_end(self, epoch: int, row: dict[str, Any]) -> None:
        """Record this epoch's rate in ``row``, then set the rates of the next epoch."""
        row[f"lr.{self.name}"] = float(self.schedules[0].optimizer.param_groups[0]["lr"])
        for schedule in self.schedules:
            schedule.set_epoch(epoch + 1)
