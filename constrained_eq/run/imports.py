"""User code named in a problem file by import path: ``package.module:attribute``.

Wherever a problem file names a task, a model, an optimizer or a constraint target, a name with a
colon is imported (from the current folder or ``PYTHONPATH``) instead of looked up among the built-in
ones::

    model: {name: labmodels.nets:wide_mlp, options: {hidden: 16}}    # wide_mlp(hidden=16) -> nn.Module
    constraints:
      - Inequality(target=labmodels.targets:first_layer_norm, bound=1.5)   # fn(model, batch, output) -> (L,)

Every failure — a module that does not import, a missing attribute, an object of the wrong kind, a
signature that does not take the file's options — raises :class:`ImportPathError` (a ``ValueError``)
with one line saying which; the problem-file loader adds the file and the line.

The generic part (the path syntax, :func:`load_object`, :func:`check_call`) lives in
:mod:`constrained_eq._utils.import_path`, constraint targets in :func:`constrained_eq.core.problem.target.load_target`
and tasks in :func:`constrained_eq.tasks.load_task`; they are re-exported here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from constrained_eq._utils.import_path import (
    ImportPathError,
    check_call,
    describe_kind,
    load_object,
)

__all__ = ["load_model_factory", "load_optimizer"]


def load_model_factory(path: str, options: Mapping[str, Any]) -> Callable[..., Any]:
    """Import a model factory (a function or an ``nn.Module`` class) and check it takes ``options``.

    Raises:
        ImportPathError: If the attribute is not callable or its signature refuses the options.
    """
    obj = load_object(path, "model")
    if not callable(obj):
        raise ImportPathError(f"Expected the model {path!r} to be a function or an nn.Module class called with "
                              f"the file's model.options (got {describe_kind(obj)})")
    check_call(obj, path, "model", **options)
    return obj


def build_model(path: str, options: Mapping[str, Any]) -> Any:
    """Call the model factory at ``path`` with ``options``; the result must be an ``nn.Module``.

    Raises:
        ImportPathError: If the factory is unusable or returns something else than a module.
    """
    from torch import nn

    model = load_model_factory(path, options)(**options)
    if not isinstance(model, nn.Module):
        raise ImportPathError(f"Expected the model {path!r} to return a torch.nn.Module (got {describe_kind(model)})")
    return model


def load_optimizer(path: str, options: Mapping[str, Any]) -> Callable[..., Any]:
    """Import an optimizer: a ``torch.optim.Optimizer`` subclass, or a function ``fn(params, lr=…, …)``.

    Args:
        path: The import path.
        options: The keyword arguments it will get besides the parameters (``lr``, ``weight_decay``, …).

    Raises:
        ImportPathError: On a class that is not an optimizer, a non-callable, or a signature that refuses
            ``(params, **options)``.
    """
    import torch

    obj = load_object(path, "optimizer")
    if isinstance(obj, type) and not issubclass(obj, torch.optim.Optimizer):
        raise ImportPathError(f"Expected the optimizer {path!r} to be a torch.optim.Optimizer subclass or a function "
                              f"returning one (got the class {obj.__name__})")
    if not callable(obj):
        raise ImportPathError(f"Expected the optimizer {path!r} to be a torch.optim.Optimizer subclass or a function "
                              f"returning one (got {describe_kind(obj)})")
    check_call(obj, path, "optimizer", [], **options)
    return obj
