"""Public names imported on first use (PEP 562): a package's ``__getattr__`` and ``__dir__`` from a table.

A package that re-exports names from heavy modules (torch, e3nn, PyTorch Geometric) lists where each
name lives instead of importing it; ``import`` of the package then costs nothing, and the first
``package.Name`` imports its module and caches the name in the package.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["lazy_names"]


def lazy_names(package: str, home: Mapping[str, str], first_use: tuple[str, ...] = ()
               ) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``(__getattr__, __dir__)`` for ``package``, where ``home[name]`` is the module that defines ``name``.

    A name whose home is ``f"{package}.{name}"`` is that submodule itself. The modules in ``first_use`` are
    imported with the first name looked up: those that fill registries by being imported (targets known by
    name), so that a name written as a string works as it did when the package imported everything.

    Examples:
        >>> getattr_, dir_ = lazy_names("json", {"JSONDecoder": "json.decoder"})
        >>> getattr_("JSONDecoder").__name__, "JSONDecoder" in dir_()
        ('JSONDecoder', True)
    """

    def __getattr__(name: str) -> Any:
        if name not in home:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        for registering in first_use:
            importlib.import_module(registering)
        module = importlib.import_module(home[name])
        value = module if home[name] == f"{package}.{name}" else getattr(module, name)
        setattr(sys.modules[package], name, value)  # later look-ups skip __getattr__
        return value

    def __dir__() -> list[str]:
        return sorted({*vars(sys.modules[package]), *home})

    return __getattr__, __dir__
