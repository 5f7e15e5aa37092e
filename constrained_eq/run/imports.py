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
"""

from __future__ import annotations

import importlib
import inspect
import os
import re
import sys
from collections.abc import Callable, Mapping
from typing import Any

__all__ = [
    "ImportPathError",
    "is_import_path",
    "load_object",
    "load_task",
    "load_model_factory",
    "load_optimizer",
    "load_target",
    "check_call",
    "quote_import_paths",
]

_PATH = re.compile(r"^[A-Za-z_][\w]*(?:\.[A-Za-z_][\w]*)*:[A-Za-z_][\w]*(?:\.[A-Za-z_][\w]*)*$")
# ``target=pkg.mod:attr`` (or a first positional ``pkg.mod:attr``) inside a constraint's repr
_IN_CALL = re.compile(r"(?<=[(,=])(\s*)([A-Za-z_][\w]*(?:\.[A-Za-z_][\w]*)*:[A-Za-z_][\w]*(?:\.[A-Za-z_][\w]*)*)"
                      r"(?=\s*[,)])")


class ImportPathError(ValueError):
    """An import path in a problem file that cannot be used (one line, without the file and line)."""


def is_import_path(name: Any) -> bool:
    """``True`` for a string written ``package.module:attribute`` (attribute may be dotted)."""
    return isinstance(name, str) and bool(_PATH.match(name))


def quote_import_paths(text: str) -> str:
    """Quote the import paths of a constraint's repr so that it parses as Python.

    Examples:
        >>> quote_import_paths("Inequality(target=lab.targets:norms, bound=1.5)")
        "Inequality(target='lab.targets:norms', bound=1.5)"
    """
    return _IN_CALL.sub(lambda m: f"{m.group(1)}{m.group(2)!r}", text)


def _ensure_cwd_on_path() -> None:
    """Let ``package.module`` be found in the current folder, as ``python -m`` would (appended, no shadowing)."""
    cwd = os.getcwd()
    if cwd not in sys.path and "" not in sys.path:
        sys.path.append(cwd)


def load_object(path: str, what: str) -> Any:
    """Import ``package.module:attribute`` and return the attribute.

    Args:
        path: The import path.
        what: What the object is for, in messages (``"model"``, ``"constraint target"``, …).

    Raises:
        ImportPathError: If the path is malformed, the module does not import or lacks the attribute.
    """
    if not is_import_path(path):
        raise ImportPathError(f"Expected the {what} {path!r} to be an import path 'package.module:attribute'")
    module_name, _, attribute = path.partition(":")
    _ensure_cwd_on_path()
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as err:
        missing = err.name or module_name
        raise ImportPathError(f"cannot import the {what} {path!r}: no module named {missing!r} (searched the current "
                              f"folder {os.getcwd()} and PYTHONPATH)") from None
    except Exception as err:  # noqa: BLE001 (the user's module raised while importing: say which and why)
        raise ImportPathError(f"cannot import the {what} {path!r}: importing {module_name!r} raised "
                              f"{type(err).__name__}: {err}") from None
    obj: Any = module
    for part in attribute.split("."):
        if not hasattr(obj, part):
            public = sorted(n for n in dir(obj) if not n.startswith("_"))[:12]
            raise ImportPathError(f"cannot import the {what} {path!r}: module {module_name!r} has no attribute "
                                  f"{attribute!r} (it has {', '.join(public) or 'nothing public'})")
        obj = getattr(obj, part)
    return obj


def check_call(fn: Callable[..., Any], path: str, what: str, *args: Any, **kwargs: Any) -> None:
    """Check that ``fn(*args, **kwargs)`` binds to ``fn``'s signature, without calling it.

    Raises:
        ImportPathError: Naming the arguments the signature refuses or misses.
    """
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):  # builtins without a signature: nothing to check
        return
    try:
        signature.bind(*args, **kwargs)
    except TypeError as err:
        given = ", ".join([*(["…"] * len(args)), *kwargs]) or "no arguments"
        shown = signature.replace(return_annotation=inspect.Signature.empty)
        raise ImportPathError(f"the {what} {path!r} has signature {path.partition(':')[2]}{shown}, which "
                              f"does not accept ({given}): {err}") from None


def load_task(path: str) -> type:
    """Import a :class:`~constrained_eq.tasks.Task` subclass.

    Raises:
        ImportPathError: If the attribute is not a ``Task`` subclass.
    """
    from constrained_eq.tasks.base import Task

    obj = load_object(path, "task")
    if not (isinstance(obj, type) and issubclass(obj, Task)):
        raise ImportPathError(f"Expected the task {path!r} to be a subclass of constrained_eq.tasks.Task "
                              f"(got {_kind(obj)})")
    if not isinstance(getattr(obj, "name", None), str):
        obj.name = path.partition(":")[2]
    return obj


def load_model_factory(path: str, options: Mapping[str, Any]) -> Callable[..., Any]:
    """Import a model factory (a function or an ``nn.Module`` class) and check it takes ``options``.

    Raises:
        ImportPathError: If the attribute is not callable or its signature refuses the options.
    """
    obj = load_object(path, "model")
    if not callable(obj):
        raise ImportPathError(f"Expected the model {path!r} to be a function or an nn.Module class called with "
                              f"the file's model.options (got {_kind(obj)})")
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
        raise ImportPathError(f"Expected the model {path!r} to return a torch.nn.Module (got {_kind(model)})")
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
                              f"returning one (got {_kind(obj)})")
    check_call(obj, path, "optimizer", [], **options)
    return obj


def load_target(path: str) -> Any:
    """Import a constraint target: a :class:`~constrained_eq.core.constraints.Target` or ``fn(model, batch, output)``.

    A function becomes ``Target(fn, name=<attribute>)``, which reads the batch (the solver evaluates it on
    an example batch to learn its size ``L``).

    Raises:
        ImportPathError: If the attribute is neither, or the function does not take ``(model, batch, output)``.
    """
    from constrained_eq.core.constraints import Target

    obj = load_object(path, "constraint target")
    if isinstance(obj, Target):
        return obj
    if not callable(obj) or isinstance(obj, type):
        raise ImportPathError(f"Expected the constraint target {path!r} to be a Target or a function "
                              f"fn(model, batch, output) -> Tensor (L,) (got {_kind(obj)})")
    check_call(obj, path, "constraint target", None, None, None)
    name = path.rpartition(":")[2].rpartition(".")[2]
    return Target(obj, name)


def _kind(obj: Any) -> str:
    if isinstance(obj, type):
        return f"the class {obj.__name__}"
    if inspect.ismodule(obj):
        return f"the module {obj.__name__}"
    return f"a {type(obj).__name__}"
