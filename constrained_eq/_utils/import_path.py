"""Import an object named ``package.module:attribute`` (user code named in a problem file or a constraint).

The generic half of :mod:`constrained_eq.run.imports`: the path syntax, the import itself and the
signature check, with one-line :class:`ImportPathError` messages. It sits in ``core`` so that
constraints (``target=lab.targets:norms``) and tasks can import user code without importing ``run``.
"""

from __future__ import annotations

import importlib
import inspect
import os
import re
import sys
from collections.abc import Callable
from typing import Any

__all__ = ["ImportPathError", "is_import_path", "quote_import_paths", "load_object", "check_call", "describe_kind"]

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


def describe_kind(obj: Any) -> str:
    """``the class X``, ``the module m`` or ``a T``: what ``obj`` is, for messages."""
    if isinstance(obj, type):
        return f"the class {obj.__name__}"
    if inspect.ismodule(obj):
        return f"the module {obj.__name__}"
    return f"a {type(obj).__name__}"
