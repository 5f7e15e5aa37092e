"""The problem file's JSON Schema and the reference table of docs/running.md, both generated from one model.

The keys, defaults and meanings come from :mod:`~constrained_eq.run.problem_model`, the allowed values from
the checks of :mod:`~constrained_eq.run.problem_schema`. ``constrained_eq/problem.schema.json`` is shipped
with the package so that editors can validate problem files (e.g. with a ``# yaml-language-server:
$schema=…`` line); ``tests/run/test_problem_reference.py`` fails when it or the docs' table disagree with this
module. Regenerate both with::

    python -m constrained_eq.run.problem_reference --write
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
from pathlib import Path
from typing import Any

from constrained_eq.run.problem_model import ABSENT_IS_DEFAULT, REQUIRED, SECTIONS, DualOptimizer, Problem, default_of
from constrained_eq.run.problem_schema import BOOL, CHECKS, MAPPING, NONNEG_NUMBER, POS_NUMBER, SCHEDULE, STR, Check

__all__ = ["json_schema", "reference_rows", "reference_table", "SCHEMA_FILE", "DOCS_FILE"]

SCHEMA_FILE = Path(__file__).resolve().parents[1] / "problem.schema.json"
DOCS_FILE = Path(__file__).resolve().parents[2] / "docs" / "running.md"
_BEGIN, _END = "<!-- problem-reference: begin (generated) -->", "<!-- problem-reference: end -->"
_FIXED = {id(BOOL): {"type": "boolean"}, id(STR): {"type": "string"}, id(MAPPING): {"type": "object"},
          id(POS_NUMBER): {"type": "number", "exclusiveMinimum": 0},
          id(NONNEG_NUMBER): {"type": "number", "minimum": 0},
          id(SCHEDULE): {"type": ["null", "string", "object"]}}


def _fragment(check: Check) -> dict[str, Any]:
    """The JSON Schema of one check, read from the check itself or its description."""
    if id(check) in _FIXED:
        return dict(_FIXED[id(check)])
    text = check[1]
    if text.startswith("null or "):
        inner = _fragment((check[0], text[len("null or "):]))
        return {"anyOf": [{"type": "null"}, inner]}
    if match := re.fullmatch(r"an integer in \[(-?\d+), (-?\d+)\]", text):
        return {"type": "integer", "minimum": int(match[1]), "maximum": int(match[2])}
    if match := re.fullmatch(r"one of (.+?)( or an import path 'package\.module:attribute')?", text):
        choices = {"enum": [json.loads(c.replace("'", '"')) for c in re.findall(r"'[^']*'", match[1])]}
        return {"anyOf": [choices, {"type": "string", "pattern": ":"}]} if match[2] else choices
    if text == "a number > 0":
        return dict(_FIXED[id(POS_NUMBER)])
    if text == "a number ≥ 0":
        return dict(_FIXED[id(NONNEG_NUMBER)])
    if text == "a number in (0, 1)":
        return {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1}
    if text.startswith("a list"):
        return {"type": "array"}
    raise ValueError(f"no JSON Schema for the check {text!r}: add it to _fragment")


def _keys() -> list[tuple[str, dataclasses.Field, Check | None]]:
    """``(dotted key, field, check)`` of every documented key, in the model's order."""
    from constrained_eq.core.solver.dual_optimizers import DUAL_OPTIMIZERS

    sections = {**SECTIONS, "dual_optimizer": DualOptimizer}
    out = []
    for f in dataclasses.fields(Problem):
        if f.name in ("source", "given"):
            continue
        if f.name in sections:
            for g in dataclasses.fields(sections[f.name]):
                key = f"{f.name}.{g.name}"
                check = CHECKS.get(key) or ({"dual_optimizer.name": (None, "one of " + ", ".join(
                    repr(n) for n in DUAL_OPTIMIZERS)), "dual_optimizer.options": MAPPING}[key])
                out.append((key, g, check))
        else:
            out.append((f.name, f, CHECKS.get(f.name, (None, "a list"))))
    return out


def _default(f: dataclasses.Field) -> Any:
    default = default_of(f)
    if default is ABSENT_IS_DEFAULT:
        return f.default
    return None if default is REQUIRED else default


def json_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of a problem file: types, ranges, choices, defaults, descriptions."""
    properties: dict[str, Any] = {}
    for key, f, check in _keys():
        node = {**_fragment(check), "description": f.metadata["doc"]}
        if default_of(f) is not REQUIRED:
            node["default"] = _default(f) if key != "constraints" else ["Equality(target=gammas)"]
        section, _, name = key.rpartition(".")
        if not section:
            properties[name] = node
            continue
        holder = properties.setdefault(section, {"type": "object", "properties": {}, "additionalProperties": False})
        holder["properties"][name] = node
        if default_of(f) is REQUIRED:
            holder.setdefault("required", []).append(name)
    properties["constraints"]["items"] = {"anyOf": [{"type": "string"}, {"type": "object"}]}
    for short in ("formulation", "dual_optimizer"):  # `formulation: resilient` is short for {name: resilient}
        properties[short] = {"anyOf": [{"type": "string"}, properties[short]]}
    return {"$schema": "https://json-schema.org/draft/2020-12/schema",
            "title": "constrained_eq problem file", "type": "object", "required": ["task", "model"],
            "additionalProperties": False, "properties": properties}


def _show(value: Any) -> str:
    return f"`{json.dumps(value, ensure_ascii=False)}`" if not isinstance(value, str) else f"`{value}`"


def reference_rows() -> list[str]:
    """One markdown row per key: key, default, allowed values (the check's), meaning (the field's doc)."""
    rows = ["| key | default | allowed values | meaning |", "|---|---|---|---|"]
    for key, f, check in _keys():
        default = "required" if default_of(f) is REQUIRED else _show(_default(f))
        if key == "constraints":
            default = '`["Equality(target=gammas)"]`'
        allowed = check[1].replace("|", "\\|")
        rows.append(f"| `{key}` | {default} | {allowed} | {f.metadata['doc']} |")
    return rows


def reference_table() -> str:
    """The generated block of docs/running.md, markers included."""
    return "\n".join([_BEGIN, *reference_rows(), _END])


def _write() -> None:
    SCHEMA_FILE.write_text(json.dumps(json_schema(), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    text = DOCS_FILE.read_text(encoding="utf-8")
    begin, end = text.index(_BEGIN), text.index(_END) + len(_END)
    DOCS_FILE.write_text(text[:begin] + reference_table() + text[end:], encoding="utf-8")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="write problem.schema.json and the table of docs/running.md")
    parser.add_argument("--write", action="store_true", help="write both files (otherwise print the schema)")
    if parser.parse_args().write:
        _write()
    else:
        print(json.dumps(json_schema(), indent=2, ensure_ascii=False))
