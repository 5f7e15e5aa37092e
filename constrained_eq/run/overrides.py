"""Command-line overrides of a problem file: ``ceq run F --set training.epochs=3 --set optimizer.lr=5e-3``.

An override is a dotted path and a YAML value (read like the file itself, so ``5e-3`` is a float,
``true`` a bool and ``[a, b]`` a list). It is written into the loaded file *before* the file is checked,
so the same schema validates it, and every key it sets remembers where it came from: a mistake is
reported as ``<file>: --set training.epochs=abc: …`` instead of a line number.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["Override", "parse_set", "as_overrides", "apply_overrides"]

_KEY = re.compile(r"^[A-Za-z_][\w-]*(?:\.[A-Za-z_][\w-]*)*$")


@dataclass(frozen=True)
class Override:
    """One override: ``path`` of keys, the ``value`` to set, and ``origin``, how the user wrote it.

    Attributes:
        path: The keys from the top of the file, e.g. ``("optimizer", "lr")``.
        value: The value (already read as YAML).
        origin: What errors name, e.g. ``"--set optimizer.lr=5e-3"``.
    """

    path: tuple[str, ...]
    value: Any
    origin: str


def parse_value(text: str, origin: str) -> Any:
    """Read ``text`` as a YAML value, with the problem files' resolver (``5e-3``, ``1E-4``, ``.5`` are floats).

    Raises:
        ValueError: If ``text`` is not valid YAML (names ``origin``).
    """
    from constrained_eq.run.problem_yaml import ProblemFileError, parse_yaml, plain

    try:
        return plain(parse_yaml(text, origin))  # the problem files' limits: size, depth, aliases, plain values
    except ProblemFileError as err:
        problem = err.message.removeprefix("invalid YAML: ")
        raise ValueError(f"{origin}: Expected a YAML value after '=' ({problem})") from None


def parse_set(text: str, flag: str = "--set") -> Override:
    """Parse ``"section.key=value"`` as given to ``--set``.

    Examples:
        >>> parse_set("optimizer.lr=5e-3")
        Override(path=('optimizer', 'lr'), value=0.005, origin='--set optimizer.lr=5e-3')

    Raises:
        ValueError: If there is no ``=``, the key is not a dotted name, or the value is not YAML.
    """
    origin = f"{flag} {text if len(text) <= 200 else text[:200] + f'… ({len(text)} characters)'}"
    key, sep, value = text.partition("=")
    key = key.strip()
    if not sep or not _KEY.match(key):
        raise ValueError(f"{origin}: Expected {flag} KEY=VALUE with a dotted KEY such as 'training.epochs=3' or "
                         f"'optimizer.lr=5e-3' (got {text[:200]!r})")
    return Override(tuple(key.split(".")), parse_value(value, origin), origin)


def as_overrides(overrides: Mapping[str, Any] | Iterable[Override] | None) -> list[Override]:
    """Normalise ``{"training.epochs": 2}`` mappings (the Python API) and :class:`Override` lists to a list."""
    if overrides is None:
        return []
    if isinstance(overrides, Mapping):
        return [Override(tuple(k.split(".")), v, f"override {k}={v!r}") for k, v in overrides.items()]
    return list(overrides)


def apply_overrides(raw: dict, overrides: Iterable[Override], fail: Any) -> None:
    """Write each override into the loaded file ``raw`` (a mapping whose keys remember their lines).

    The keys an override sets (and the sections it creates) take its ``origin`` as their "line", so a
    check that fails on them names the override. A section given by its name alone
    (``formulation: resilient``) becomes ``{name: resilient}`` when an override sets a key inside it.

    Args:
        raw: The loaded file.
        overrides: The overrides, applied in order (a later one wins).
        fail: ``fail(line, message) -> Exception`` of the problem-file checker.

    Raises:
        ProblemFileError: If an override walks through a value that is not a mapping.
    """
    from constrained_eq.run.problem_yaml import LineMap

    for override in overrides:
        node = raw
        for depth, key in enumerate(override.path[:-1]):
            child = node.get(key)
            if child is None or isinstance(child, str):
                named = child
                child = LineMap()
                child.line, child.key_lines = override.origin, {}
                if isinstance(named, str):  # `formulation: resilient` -> {name: resilient}
                    child["name"] = named
                    child.key_lines["name"] = getattr(node, "key_lines", {}).get(key, override.origin)
                node[key] = child
                _remember(node, key, override.origin)
            if not isinstance(child, dict):
                where = ".".join(override.path[: depth + 1])
                raise fail(override.origin, f"Expected '{where}' to be a mapping to set "
                                            f"'{override.path[depth + 1]}' in (got {child!r})")
            node = child
        node[override.path[-1]] = override.value
        _remember(node, override.path[-1], override.origin)


def _remember(node: dict, key: str, origin: str) -> None:
    if not hasattr(node, "key_lines"):
        return
    node.key_lines[key] = origin
