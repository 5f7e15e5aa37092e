"""Task registry: a task name in a problem file → a :class:`Task` class, imported on first use.

Each task lives in its own module, so one whose dependencies are missing (e.g. ``nbody``) fails
only when it is asked for, with a message, and the rest of the package imports without it.
"""

from __future__ import annotations

import importlib

from constrained_eq._utils.import_path import ImportPathError, describe_kind, load_object
from constrained_eq.symmetry.haar import random_rotation
from constrained_eq.tasks.base import Loaders, Task, projected

__all__ = ["Task", "Loaders", "projected", "random_rotation", "register_task", "task_names", "get_task",
           "load_task"]

_TASKS: dict[str, str | type[Task]] = {}  # the registry, filled by register_task


def register_task(name: str, task: str | type[Task]) -> None:
    """Make a task known by ``name`` (``ceq.register_task``): a :class:`Task` subclass or ``"module.path:ClassName"``.

    A string is imported on first use, so a task whose dependencies are missing fails only when asked for.

    Raises:
        ValueError: If ``name`` is not an identifier.
        TypeError: If ``task`` is neither a :class:`Task` subclass nor a ``"module:Class"`` string.
    """
    if not isinstance(name, str) or not name.isidentifier():
        raise ValueError(f"Expected 'name' to be a Python identifier (got {name!r})")
    if not (isinstance(task, str) and ":" in task) and not (isinstance(task, type) and issubclass(task, Task)):
        raise TypeError(f"Expected 'task' to be a Task subclass or 'module.path:ClassName' (got {task!r})")
    _TASKS[name] = task


for _name, _path in (
    ("toy_rotation", "constrained_eq.tasks.toy_rotation:ToyRotation"),
    ("nbody", "constrained_eq.tasks.nbody:NBody"),
    ("classification", "constrained_eq.tasks.classification:Classification"),
    ("fairness", "constrained_eq.tasks.fairness:Fairness"),
    ("qm9", "constrained_eq.tasks.qm9:QM9"),
    ("modelnet", "constrained_eq.tasks.modelnet:ModelNet"),
    ("mocap", "constrained_eq.tasks.mocap:Mocap"),
):
    register_task(_name, _path)
del _name, _path


def task_names() -> list[str]:
    """The registered task names."""
    return list(_TASKS)


def get_task(name: str) -> type[Task]:
    """Return the task class registered as ``name``.

    Raises:
        ValueError: If ``name`` is unknown (the message lists the choices) or its module cannot be imported.
            A name written ``package.module:Class`` is imported (:func:`load_task`).
    """
    if ":" in name:
        return load_task(name)
    if name not in _TASKS:
        choices = ", ".join(repr(k) for k in _TASKS)
        raise ValueError(f"Expected 'task.name' to be one of {choices} (got {name!r})")
    entry = _TASKS[name]
    if isinstance(entry, str):
        module_name, _, attr = entry.partition(":")
        try:
            entry = getattr(importlib.import_module(module_name), attr)
        except ImportError as err:
            raise ValueError(f"Task {name!r} is not available in this installation ({err}); "
                             f"install its dependencies or pick another task") from None
        _TASKS[name] = entry
    return entry


def load_task(path: str) -> type:
    """Import a :class:`~constrained_eq.tasks.Task` subclass named ``package.module:Class``.

    Raises:
        ImportPathError: If the attribute is not a ``Task`` subclass.
    """
    obj = load_object(path, "task")
    if not (isinstance(obj, type) and issubclass(obj, Task)):
        raise ImportPathError(f"Expected the task {path!r} to be a subclass of constrained_eq.tasks.Task "
                              f"(got {describe_kind(obj)})")
    if not isinstance(getattr(obj, "name", None), str):
        obj.name = path.partition(":")[2]
    return obj
