r"""Training options of a problem file: learning-rate schedules, gradient clipping, bf16 autocast.

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

``training.clip_grad_norm: c`` rescales the gradient of θ (the primal optimizer's parameters) to norm
at most c before each primal step, :math:`g \leftarrow g \min(1, c / \|g\|_2)`; ``training.precision:
bf16`` runs the training forward passes under ``torch.autocast(dtype=torch.bfloat16)`` (the loss is
taken in float32; validation and test stay in float32).

Each epoch's ``history.csv`` row records ``lr.primal`` / ``lr.variables`` (the rates that epoch used)
when scheduled and, with clipping, ``grad_norm.primal`` (the norm before clipping at the epoch's last step).
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Mapping
from typing import Any

import torch

__all__ = ["SCHEDULES", "resolve_schedule", "LRSchedule", "GradClipper", "autocast_forward", "check_precision",
           "TrainingOptions", "split_optimizers"]


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
    from constrained_eq.core.import_path import ImportPathError, check_call, is_import_path, load_object

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


class GradClipper:
    """Clip the joint gradient norm of the parameters of ``optimizers`` to ``max_norm`` before their steps.

    A step pre-hook of the first optimizer: the primal optimizers step one after the other after one
    backward pass, so the first step sees every gradient and the norm is that of all of θ together.
    """

    def __init__(self, optimizers: torch.optim.Optimizer | list[torch.optim.Optimizer], max_norm: float) -> None:
        self.optimizers = optimizers if isinstance(optimizers, list) else [optimizers]
        self.max_norm = float(max_norm)
        self.last_norm: torch.Tensor | None = None
        self.optimizers[0].register_step_pre_hook(self)

    def __call__(self, optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        params = [p for opt in self.optimizers for group in opt.param_groups for p in group["params"]
                  if p.grad is not None]
        if params:
            self.last_norm = torch.nn.utils.clip_grad_norm_(params, self.max_norm, foreach=True).detach()


def check_precision(precision: str, device: str | torch.device) -> None:
    """Refuse ``bf16`` on a device without bfloat16 autocast.

    Raises:
        ValueError: Naming the device.
    """
    if precision != "bf16":
        return
    device_type = torch.device(device).type
    if not torch.amp.is_autocast_available(device_type) or (
            device_type == "cuda" and not torch.cuda.is_bf16_supported()):
        raise ValueError(f"Expected 'training.precision' to be 'fp32' on device {device_type!r}, which has no "
                         "bfloat16 autocast (got 'bf16')")


def autocast_forward(forward: Callable[[Any, Any], Any], device: str | torch.device) -> Callable[[Any, Any], Any]:
    """``forward`` run under bfloat16 autocast, its tensor output cast back to float32."""
    device_type = torch.device(device).type

    def run(model: Any, batch: Any) -> Any:
        with torch.autocast(device_type, dtype=torch.bfloat16):
            output = forward(model, batch)
        return output.float() if isinstance(output, torch.Tensor) and output.is_floating_point() else output

    return run


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


class TrainingOptions:
    """The schedules and the clipper of one run; :meth:`end_epoch` is ``fit``'s ``on_epoch`` hook.

    Args:
        training: The problem file's ``training`` section.
        primal: The optimizers of θ (one, or one per ``optimizer.groups`` block), all on one schedule.
        variables: The optimizer of γ and u, or ``None``.
    """

    def __init__(self, training: Mapping[str, Any], primal: list[torch.optim.Optimizer],
                 variables: torch.optim.Optimizer | None) -> None:
        epochs = training["epochs"]
        self.schedules: dict[str, list[LRSchedule]] = {}
        for key, which, optimizers in (("scheduler", "primal", primal),
                                       ("variable_scheduler", "variables", [variables] if variables else [])):
            spec = training.get(key)
            if spec is not None and optimizers:
                factor = resolve_schedule(spec["name"], spec["options"], epochs)
                self.schedules[which] = [LRSchedule(optimizer, factor) for optimizer in optimizers]
        clip = training.get("clip_grad_norm")
        self.clipper = GradClipper(primal, clip) if clip is not None and primal else None

    def end_epoch(self, epoch: int, row: dict[str, Any]) -> None:
        """Add the epoch's rates (and gradient norm) to its ``row``, then set the rates of the next epoch."""
        for which, schedules in self.schedules.items():
            row[f"lr.{which}"] = float(schedules[0].optimizer.param_groups[0]["lr"])
        if self.clipper is not None and self.clipper.last_norm is not None:
            row["grad_norm.primal"] = float(self.clipper.last_norm)
        for schedules in self.schedules.values():
            for schedule in schedules:
                schedule.set_epoch(epoch + 1)
