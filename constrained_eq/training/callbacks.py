"""The one way code attaches to :func:`~constrained_eq.training.fit.fit`: callbacks.

A callback is any object with some of the four methods of :class:`Callback`; ``fit`` calls each present
method of each callback in the order given, on every rank:

=====================================  ===================================================================
``on_fit_start(solver)``               once, before the first epoch (and before a resume restores the state)
``on_epoch_start(epoch)``              before the epoch's first step, after ``solver.set_epoch(epoch)``
``on_epoch_end(epoch, row)``           after the epoch's validation, with its ``history.csv`` row before it
                                       is written: a callback may add ``"<a>.<b>"`` columns (a learning rate)
``on_fit_end(result)``                 once, with the :class:`~constrained_eq.training.settings.FitResult`
=====================================  ===================================================================

The learning-rate schedules (:class:`~constrained_eq.training.schedules.LRScheduler`), gradient clipping
(:class:`~constrained_eq.training.clipping.GradClipper`) and ``ceq``'s TensorBoard log are callbacks;
:class:`LambdaCallback` turns plain functions into one.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

__all__ = ["Callback", "LambdaCallback", "HOOKS", "check_callbacks", "call_hooks"]

HOOKS = ("on_fit_start", "on_epoch_start", "on_epoch_end", "on_fit_end")


class Callback:
    """Base class of the callbacks of ``fit``: every hook does nothing until a subclass overrides it."""

    def on_fit_start(self, solver: Any) -> None:
        """Before the first epoch; ``solver`` is the one being trained."""

    def on_epoch_start(self, epoch: int) -> None:
        """Before the first step of ``epoch`` (0-based)."""

    def on_epoch_end(self, epoch: int, row: dict[str, Any]) -> None:
        """After ``epoch``, with its ``history.csv`` row (columns may be added) before it is written."""

    def on_fit_end(self, result: Any) -> None:
        """After the last epoch, the test split and the certificate, with ``fit``'s result."""


class LambdaCallback(Callback):
    """A callback made of functions: ``LambdaCallback(on_epoch_end=lambda epoch, row: …)``.

    Raises:
        TypeError: On a keyword that is not a hook (:data:`HOOKS`) or a value that is not callable.
    """

    def __init__(self, **hooks: Callable[..., None]) -> None:
        for name, fn in hooks.items():
            if name not in HOOKS:
                raise TypeError(f"LambdaCallback: unknown hook {name!r}; the hooks are {', '.join(HOOKS)}")
            if not callable(fn):
                raise TypeError(f"LambdaCallback: expected '{name}' to be callable (got {fn!r})")
            setattr(self, name, fn)


def check_callbacks(callbacks: Sequence[Any]) -> list[Any]:
    """The callbacks as a list; refuses one that has none of the hooks (naming its position)."""
    if isinstance(callbacks, Callback) or callable(callbacks):
        callbacks = [callbacks]
    out = list(callbacks)
    for i, callback in enumerate(out):
        if not any(callable(getattr(callback, name, None)) for name in HOOKS):
            raise TypeError(f"fit: expected callbacks[{i}] to have one of the hooks {', '.join(HOOKS)} "
                            f"(got {callback!r}); wrap a function in LambdaCallback(on_epoch_end=fn)")
    return out


def call_hooks(callbacks: Sequence[Any], hook: str, *args: Any) -> None:
    """Call ``hook(*args)`` on every callback that has it, in order."""
    for callback in callbacks:
        method = getattr(callback, hook, None)
        if method is not None:
            method(*args)
