"""Reading a problem file's YAML so that every mapping and sequence remembers its lines.

The loader is libyaml's safe loader when present; it refuses duplicate and complex keys, and reads
``5e-3``, ``1E-4`` and ``1e5`` as floats (YAML 1.2), not strings. :class:`ProblemFileError` is the
one error of problem files, ``<file>:<line>: <message>``. Shared by :mod:`constrained_eq.run.problem_file`
and :mod:`constrained_eq.run.overrides` (which parses ``--set`` values with the same loader).
"""

from __future__ import annotations

import os
import re
from typing import Any

import yaml

__all__ = ["ProblemFileError"]


class ProblemFileError(ValueError):
    """A mistake in a problem file, reported as ``<file>:<line>: <message>``.

    ``line`` is a string for a value that came from the command line (``<file>: --set a.b=c: <message>``).
    """

    def __init__(self, file: str | os.PathLike, line: int | str | None, message: str) -> None:
        self.file, self.line, self.message = str(file), line, message
        where = f"{self.file}: {line}" if isinstance(line, str) else f"{self.file}:{line}" if line else self.file
        super().__init__(f"{where}: {message}")

    def __reduce__(self) -> tuple:
        return type(self), (self.file, self.line, self.message)


class _Map(dict):
    line: int = 0
    key_lines: dict


class _Seq(list):
    line: int = 0
    item_lines: list


class _Loader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # libyaml's parser when present (~20x faster)
    """A safe loader whose mappings and sequences remember the line of each key and item."""


def _construct_map(loader: _Loader, node: yaml.MappingNode) -> _Map:
    loader.flatten_mapping(node)
    out = _Map()
    out.line, out.key_lines = node.start_mark.line + 1, {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        if not isinstance(key, str | int | float | bool | None):  # `? [a, b]`: a complex key
            raise ProblemFileError(loader.name, key_node.start_mark.line + 1,
                                   f"Expected every key to be a string (got a {type(key).__name__.lstrip('_')})")
        if key in out:
            raise ProblemFileError(loader.name, key_node.start_mark.line + 1, f"key {key!r} is given twice")
        out[key] = loader.construct_object(value_node, deep=True)
        out.key_lines[key] = key_node.start_mark.line + 1
    return out


def _construct_seq(loader: _Loader, node: yaml.SequenceNode) -> _Seq:
    out = _Seq(loader.construct_object(child, deep=True) for child in node.value)
    out.line, out.item_lines = node.start_mark.line + 1, [child.start_mark.line + 1 for child in node.value]
    return out


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_map)
_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG, _construct_seq)
# YAML 1.1 reads `5e-3`, `1E-4` and `1e5` as strings (its floats need a dot and a signed exponent);
# this resolver, checked before the standard one, reads them as floats as YAML 1.2 does.
_Loader.yaml_implicit_resolvers = {key: list(value) for key, value in _Loader.yaml_implicit_resolvers.items()}
for _first in "-+0123456789.":
    _Loader.yaml_implicit_resolvers.setdefault(_first, []).insert(0, ("tag:yaml.org,2002:float", re.compile(
        r"""^(?:[-+]?[0-9][0-9_]*\.[0-9_]*(?:[eE][-+]?[0-9]+)?
        |[-+]?[0-9][0-9_]*[eE][-+]?[0-9]+
        |[-+]?\.[0-9_]+(?:[eE][-+]?[0-9]+)?)$""", re.X)))


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value
