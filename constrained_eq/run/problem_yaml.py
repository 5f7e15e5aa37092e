"""Reading a problem file's YAML so that every mapping and sequence remembers its lines.

The loader is libyaml's safe loader when present; it refuses duplicate and complex keys, and resolves
plain scalars by the YAML 1.2 core schema, not PyYAML's YAML 1.1 one: ``5e-3``, ``1E-4`` and ``1e5`` are
floats; only ``true``/``false`` (any case spelling ``True``, ``TRUE``) are booleans, so ``yes``, ``no``,
``on``, ``off`` are strings; ``010`` is the integer 10 (no octal without ``0o``), ``1:30`` is a string (no
base 60); ``_`` may separate digits (``1_000`` is 1000), as before. :class:`ProblemFileError` is the
one error of problem files, ``<file>:<line>: <message>``. Shared by :mod:`constrained_eq.run.problem_file`
and :mod:`constrained_eq.run.overrides` (which parses ``--set`` values with the same loader).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import yaml

__all__ = ["ProblemFileError", "MAX_BYTES", "MAX_DEPTH", "MAX_NODES", "read_yaml", "parse_yaml", "check_plain", "plain",
           "LineMap", "LineSeq", "LineLoader"]


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


class LineMap(dict):
    """A YAML mapping that remembers its own line and the line of each key (``key_lines``)."""

    line: int = 0
    key_lines: dict


class LineSeq(list):
    """A YAML sequence that remembers its own line and the line of each item (``item_lines``)."""

    line: int = 0
    item_lines: list


class LineLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # libyaml's parser when present (~20x faster)
    """A safe loader whose mappings and sequences remember the line of each key and item."""


def _construct_map(loader: LineLoader, node: yaml.MappingNode) -> LineMap:
    loader.flatten_mapping(node)
    out = LineMap()
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


def _construct_seq(loader: LineLoader, node: yaml.SequenceNode) -> LineSeq:
    out = LineSeq(loader.construct_object(child, deep=True) for child in node.value)
    out.line, out.item_lines = node.start_mark.line + 1, [child.start_mark.line + 1 for child in node.value]
    return out


LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_map)
LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG, _construct_seq)
# The YAML 1.2 core schema in place of PyYAML's YAML 1.1 resolvers: YAML 1.1 reads `yes`/`no`/`on`/`off`
# as booleans, `010` as octal 8, `1:30` as base-60 90 and `5e-3` as a string; a reader of YAML 1.2 (and
# of this project's files) sees the strings 'yes', 'no', 'on', 'off', '1:30', the integer 10 and the float
# 0.005. Digits may be separated by `_` (`1_000`), as PyYAML and ruamel's YAML 1.2 mode read them.
# Timestamps keep their YAML 1.1 resolver only to be refused by `check_plain` (a date is never silently a
# string or a date).
_CORE = {
    "tag:yaml.org,2002:bool": (r"^(?:true|True|TRUE|false|False|FALSE)$", "tTfF"),
    "tag:yaml.org,2002:null": (r"^(?:~|null|Null|NULL|)$", ["~", "n", "N", ""]),
    "tag:yaml.org,2002:int": (r"^(?:[-+]?[0-9][0-9_]*|0o[0-7_]+|0x[0-9a-fA-F_]+)$", "-+0123456789"),
    "tag:yaml.org,2002:float": (r"""^(?:[-+]?(?:\.[0-9_]+|[0-9][0-9_]*(?:\.[0-9_]*)?)(?:[eE][-+]?[0-9]+)?
                                   |[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$""", "-+0123456789."),
}
LineLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag not in _CORE and tag != "tag:yaml.org,2002:value"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()}
for _tag, (_pattern, _firsts) in reversed(_CORE.items()):  # first checked: bool, null, int (before float)
    for _first in _firsts:
        LineLoader.yaml_implicit_resolvers.setdefault(_first, []).insert(0, (_tag, re.compile(_pattern, re.X)))


def _construct_int(loader: LineLoader, node: yaml.ScalarNode) -> int:
    """A YAML 1.2 core integer: decimal (``010`` is 10), ``0o17`` octal, ``0x1f`` hexadecimal."""
    text = str(loader.construct_scalar(node)).replace("_", "")
    try:
        if text[:2] in ("0o", "0x"):
            return int(text[2:], 8 if text[1] == "o" else 16)
        return int(text, 10)
    except ValueError:  # an explicit `!!int` on something else
        raise yaml.constructor.ConstructorError(None, None, f"{text!r} is not an integer (YAML 1.2)",
                                                node.start_mark) from None


LineLoader.add_constructor("tag:yaml.org,2002:int", _construct_int)


def plain(value: Any) -> Any:
    """``value`` as plain dicts and lists (the line-remembering containers dropped), for hashing and JSON."""
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value


# resource limits of a problem file: each is refused before the file is turned into objects
MAX_BYTES = 64 << 10  # 64 KiB; the problem files of this project are 1-2 KiB
MAX_DEPTH = 64  # nesting of mappings and sequences
MAX_NODES = 10_000  # values after every alias is expanded (an alias "bomb" expands exponentially)


def _line_of_byte(data: bytes, offset: int) -> int:
    return data.count(b"\n", 0, offset) + 1


def read_yaml(path: Path) -> Any:
    """Read, decode and parse a problem file within :data:`MAX_BYTES`, :data:`MAX_DEPTH` and :data:`MAX_NODES`.

    Raises:
        ProblemFileError: Naming the file and the line of the first offending byte or node.
    """
    if not path.is_file():
        raise ProblemFileError(path, None, "no such file" if not path.exists() else "not a file")
    size = path.stat().st_size
    if size > MAX_BYTES:
        raise ProblemFileError(path, None, f"the file has {size} bytes, more than the {MAX_BYTES} a problem file "
                                           "may have; is it the right file?")
    data = path.read_bytes()
    if b"\0" in data:
        raise ProblemFileError(path, _line_of_byte(data, data.index(b"\0")),
                               "the file holds a NUL byte: it is binary, not a YAML text file")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ProblemFileError(path, _line_of_byte(data, err.start),
                               f"the file is not UTF-8 (byte 0x{data[err.start]:02x}); save it as UTF-8") from None
    return parse_yaml(text, path)


def parse_yaml(text: str, path: Path | str) -> Any:
    """Parse YAML ``text`` within :data:`MAX_BYTES`, :data:`MAX_DEPTH` and :data:`MAX_NODES`.

    The one limited reader of every user text (problem files, sweep files, ``--set`` values); ``path``
    names it in errors.

    Raises:
        ProblemFileError: Naming ``path`` and the line of the first offending node.
    """
    if len(text) > MAX_BYTES:
        raise ProblemFileError(path, None, f"the text has {len(text)} characters, more than the {MAX_BYTES} "
                                           "allowed; is it the right file?")
    try:
        _check_shape(path, text)
        raw = yaml.load(text, Loader=lambda stream: _named(stream, path))  # noqa: S506 (a SafeLoader)
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        problem = (f"nesting deeper than {MAX_DEPTH} levels; a problem file needs a few"
                   if "nesting depth" in str(err.problem) else f"invalid YAML: {err.problem}")
        raise ProblemFileError(path, mark.line + 1 if mark else None, problem) from None
    except yaml.reader.ReaderError as err:
        raise ProblemFileError(path, text.count("\n", 0, err.position) + 1,
                               f"invalid YAML: {err.reason} character {err.character!r}") from None
    except yaml.YAMLError as err:
        raise ProblemFileError(path, None, f"invalid YAML: {' '.join(str(err).split())}") from None
    check_plain(path, raw)
    return raw


def _check_shape(path: Path, text: str) -> None:
    """Walk the YAML events (no recursion, nothing built): refuse too deep nesting and too large expansions."""
    sizes: dict[str, int] = {}
    stack: list[list[Any]] = [[0, None]]  # [node count, anchor] of each open collection
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when present: ~20x faster, same events
    for event in yaml.parse(text, Loader=loader):
        line = event.start_mark.line + 1
        if isinstance(event, yaml.CollectionStartEvent):
            stack.append([1, event.anchor])
            if len(stack) - 1 > MAX_DEPTH:
                raise ProblemFileError(path, line, f"nesting deeper than {MAX_DEPTH} levels; a problem file needs "
                                                   "a few")
            continue
        if isinstance(event, yaml.CollectionEndEvent):
            count, anchor = stack.pop()
        elif isinstance(event, yaml.AliasEvent):
            if event.anchor not in sizes:
                continue  # the composer reports the undefined alias with its line
            count, anchor = sizes[event.anchor], None
        elif isinstance(event, yaml.ScalarEvent):
            count, anchor = 1, event.anchor
        else:
            continue
        if anchor is not None:
            sizes[anchor] = count
        stack[-1][0] += count
        if stack[-1][0] > MAX_NODES or count > MAX_NODES:
            raise ProblemFileError(path, line, f"the file holds more than {MAX_NODES} values once its aliases "
                                               "(*name) are expanded; a problem file needs a few hundred")


_PLAIN_TYPES = (str, int, float, bool, type(None))


def check_plain(path: Path, raw: Any, line: int | None = 1) -> None:
    """Refuse keys that are not strings and values that are not plain (``!!binary``, ``!!set``, dates)."""
    if isinstance(raw, dict):
        lines = getattr(raw, "key_lines", {})
        for key, value in raw.items():
            if not isinstance(key, str):
                raise ProblemFileError(path, lines.get(key, getattr(raw, "line", line)),
                                       f"Expected every key to be a string (got {key!r})")
            check_plain(path, value, lines.get(key, line))
    elif isinstance(raw, list):
        item_lines = getattr(raw, "item_lines", [])
        for index, value in enumerate(raw):
            check_plain(path, value, item_lines[index] if index < len(item_lines) else line)
    elif not isinstance(raw, _PLAIN_TYPES):
        raise ProblemFileError(path, line, f"Expected a plain value (string, number, true/false, null, list or "
                                           f"mapping) (got {type(raw).__name__} {raw!r}: YAML tags such as "
                                           "!!binary, !!set and dates are not read)")


def _named(stream: str, path: Path) -> LineLoader:
    loader = LineLoader(stream)
    loader.name = str(path)
    return loader

