"""The typed problem: every problem file round-trips through it, and the shipped schema and docs agree with it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from constrained_eq.run.problem_file import load_problem, load_problem_file, problem_hash
from constrained_eq.run.problem_reference import DOCS_FILE, SCHEMA_FILE, json_schema, reference_table

ROOT = Path(__file__).resolve().parents[2]
PROBLEMS = sorted((ROOT / "problems").glob("*.yaml"))


def _valid(value, schema) -> bool:
    """The subset of JSON Schema that ``json_schema`` uses: type, enum, anyOf, bounds, properties, required."""
    if "anyOf" in schema:
        return any(_valid(value, s) for s in schema["anyOf"])
    if "enum" in schema and value not in schema["enum"]:
        return False
    kinds = schema.get("type")
    kinds = [kinds] if isinstance(kinds, str) else kinds or []
    python = {"boolean": bool, "string": str, "object": dict, "array": list, "null": type(None),
              "integer": int, "number": (int, float)}
    if kinds and not any(isinstance(value, python[k]) and not (k in ("integer", "number") and isinstance(value, bool))
                         for k in kinds):
        return False
    bounds = [("minimum", lambda v, b: v >= b), ("maximum", lambda v, b: v <= b),
              ("exclusiveMinimum", lambda v, b: v > b), ("exclusiveMaximum", lambda v, b: v < b)]
    if any(name in schema and not holds(value, schema[name]) for name, holds in bounds):
        return False
    if "pattern" in schema and schema["pattern"] not in value:
        return False
    if isinstance(value, dict) and "properties" in schema:
        if not set(schema.get("required", [])) <= set(value):
            return False
        if schema.get("additionalProperties") is False and not set(value) <= set(schema["properties"]):
            return False
        return all(_valid(v, schema["properties"][k]) for k, v in value.items() if k in schema["properties"])
    return True


@pytest.mark.parametrize("path", PROBLEMS, ids=lambda p: p.name)
def test_every_problem_file_round_trips_through_the_typed_problem_with_its_hash(path):
    spec = load_problem_file(path)
    problem = load_problem(path)
    assert problem.to_spec() == spec and problem_hash(problem.to_spec()) == problem_hash(spec)
    assert problem.training.epochs == spec["training"]["epochs"] and problem.source.file == str(path)


@pytest.mark.parametrize("path", PROBLEMS, ids=lambda p: p.name)
def test_every_problem_file_and_its_normalised_form_validate_against_the_json_schema(path):
    import yaml

    schema = json_schema()
    assert _valid(yaml.safe_load(path.read_text(encoding="utf-8")), schema)
    spec = {k: v for k, v in load_problem_file(path).items() if k not in ("file", "lines", "constraint_lines")}
    assert _valid(spec, schema)


@pytest.mark.parametrize(("text", "valid"), [
    ("task: {name: nbody}\nmodel: {name: egnn}\n", True),
    ("task: {name: nbody}\n", False),                                        # model is required
    ("task: {name: nbody}\nmodel: {name: egnn}\ntraining: {epochs: 0}\n", False),
    ("task: {name: nbody}\nmodel: {name: egnn}\ntraining: {epochz: 3}\n", False),
    ("task: {name: nbody}\nmodel: {name: egnn}\noptimizer: {name: torch.optim:RAdam}\n", True),
    ("task: {name: nbody}\nmodel: {name: egnn}\noptimizer: {name: adagrad}\n", False),
    ("task: {name: nbody}\nmodel: {name: egnn}\nformulation: resilient\n", True),
    ("task: {name: nbody}\nmodel: {name: egnn}\ntraining: {ema_decay: 1.0}\n", False),
])
def test_the_json_schema_refuses_what_the_loader_refuses(text, valid):
    import yaml

    assert _valid(yaml.safe_load(text), json_schema()) is valid


def test_the_shipped_schema_is_the_generated_one():
    assert json.loads(SCHEMA_FILE.read_text(encoding="utf-8")) == json_schema(), \
        "run `python -m constrained_eq.run.problem_reference --write`"


def test_the_docs_reference_is_the_generated_one():
    assert reference_table() in DOCS_FILE.read_text(encoding="utf-8"), \
        "run `python -m constrained_eq.run.problem_reference --write`"


def test_a_key_given_through_an_override_survives_the_round_trip():
    problem = load_problem(ROOT / "problems" / "nbody_quick.yaml", {"training.compile": True, "training.epochs": 3})
    assert problem.training.compile is True and problem.to_spec()["training"]["compile"] is True
    assert "compile" not in load_problem_file(ROOT / "problems" / "nbody_quick.yaml")["training"]  # absent is default
    assert problem.source.line_of("training.epochs") == "override training.epochs=3"
