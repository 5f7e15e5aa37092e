"""``--set`` overrides and YAML numbers: ``5e-3``, ``1E-4``, ``.5`` are floats in problem files and on the command line."""

from __future__ import annotations

import json

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from constrained_eq.run.cli import main
from constrained_eq.run.overrides import Override, parse_set
from constrained_eq.run.problem_file import load_problem_file
from constrained_eq.run.problem_yaml import LineLoader, ProblemFileError

TOY = """task:
  name: toy_rotation
  options: {n_train: 32, n_val: 16, n_test: 16, breaking: 1e-1}
model:
  name: vector_net
  options: {hidden: 4, n_layers: 2}
formulation: resilient
optimizer:
  lr: 5e-3
  weight_decay: .5
dual_lr: 1E-4
training: {epochs: 1, batch_size: 16}
"""


def _file(tmp_path, text=TOY):
    path = tmp_path / "toy.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize(("text", "value"), [("5e-3", 5e-3), ("1E-4", 1e-4), (".5", 0.5), ("-.5", -0.5),
                                             ("1e5", 1e5), ("+2.5E+2", 250.0), ("1.", 1.0), ("0.01", 0.01)])
def test_yaml_reads_exponents_and_leading_dots_as_floats(text, value):
    read = yaml.load(f"x: {text}", Loader=LineLoader)["x"]
    assert isinstance(read, float) and read == value


@pytest.mark.parametrize(("text", "value"), [("5", 5), ("-3", -3), ("1_000", 1000), ("abc", "abc"), ("e5", "e5"),
                                             ("1e", "1e"), ("true", True), ("null", None), ("'5e-3'", "5e-3")])
def test_yaml_keeps_ints_words_and_quoted_strings(text, value):
    read = yaml.load(f"x: {text}", Loader=LineLoader)["x"]
    assert read == value and type(read) is type(value)


@given(st.floats(allow_nan=False, allow_infinity=False))
def test_any_python_float_repr_reads_back_exactly(x):
    assert yaml.load(f"x: {x!r}", Loader=LineLoader)["x"] == x


def test_problem_file_numbers_in_e_notation_are_floats(tmp_path):
    spec = load_problem_file(_file(tmp_path))
    assert spec["optimizer"]["lr"] == 5e-3 and spec["optimizer"]["weight_decay"] == 0.5
    assert spec["dual_lr"] == 1e-4 and spec["task"]["options"]["breaking"] == 0.1


def test_parse_set_reads_dotted_keys_and_yaml_values():
    assert parse_set("optimizer.lr=5e-3") == Override(("optimizer", "lr"), 5e-3, "--set optimizer.lr=5e-3")
    assert parse_set("training.epochs=3").value == 3
    assert parse_set("constraints=[Equality(target=gammas)]").value == ["Equality(target=gammas)"]
    assert parse_set("model.options={hidden: 16}").value == {"hidden": 16}
    assert parse_set("training.steps_every=").value is None
    for bad in ("lr", "=3", "a..b=1", "a.=1"):
        with pytest.raises(ValueError, match=f"--set {bad}: Expected --set KEY=VALUE"):
            parse_set(bad)


def test_overrides_are_checked_by_the_schema_and_named(tmp_path):
    path = _file(tmp_path)
    spec = load_problem_file(path, [parse_set("training.epochs=3"), parse_set("optimizer.lr=1e-2"),
                                    parse_set("model.options.hidden=6"), parse_set("formulation.options.rho=2.5"),
                                    parse_set("training.epochs=4")])  # a later override wins
    assert spec["training"]["epochs"] == 4 and spec["optimizer"]["lr"] == 1e-2
    assert spec["model"]["options"] == {"hidden": 6, "n_layers": 2}
    assert spec["formulation"] == {"name": "resilient", "options": {"rho": 2.5}}  # shorthand expanded
    for text, message in [
        ("training.epochs=abc", "Expected 'training.epochs' to be an integer in [1, 100000] (got 'abc')"),
        ("optimizer.lr=-1e-3", "Expected 'optimizer.lr' to be a number > 0 (got -0.001)"),
        ("training.epoch=3", "Unknown key 'training.epoch'"),
        ("optimizer.lr.x=1", "Expected 'optimizer.lr' to be a mapping to set 'x' in (got 0.005)"),
        ("model.options.width=3", "Unknown key 'model.options.width'"),
    ]:
        with pytest.raises(ProblemFileError) as err:
            load_problem_file(path, [parse_set(text)])
        assert str(err.value) == f"{path}: --set {text}: {message}" or (
            str(err.value).startswith(f"{path}: --set {text}: {message}")), str(err.value)


def test_options_of_the_wrong_formulation_are_refused_not_dropped(tmp_path):
    """Options that the strategy leaves unused and the named formulation refuses were meant for the strategy's."""
    path = _file(tmp_path, TOY.replace("formulation: resilient\n", "constraints: [Equality(target=gammas)]\n"
                                       "strategy: ace_augmented\n"))
    with pytest.raises(ProblemFileError) as err:  # formulation.name is the default 'lagrangian', which has no options
        load_problem_file(path, [parse_set("formulation.options.penalty_coefficient=100")])
    assert str(err.value).startswith(f"{path}: --set formulation.options.penalty_coefficient=100: ") and (
        "write 'formulation.name: augmented_lagrangian'") in str(err.value), str(err.value)
    spec = load_problem_file(path, [parse_set("formulation.name=augmented_lagrangian"),
                                    parse_set("formulation.options.penalty_coefficient=100")])
    assert spec["formulation"] == {"name": "augmented_lagrangian", "options": {"penalty_coefficient": 100}}
    # options that fit the named formulation are kept for the strategies that use it (one file, every strategy)
    kept = load_problem_file(path, [parse_set("formulation.name=resilient"), parse_set("formulation.options.rho=2")])
    assert kept["formulation"] == {"name": "resilient", "options": {"rho": 2}}


def test_ceq_run_set_reaches_the_run(tmp_path, capsys):
    path = _file(tmp_path)
    assert main(["run", str(path), "--quiet", "--out", str(tmp_path / "runs"), "--set", "training.epochs=2",
                 "--set", "optimizer.lr=2e-3", "--set", "dual_lr=.25"]) == 0
    problem = json.loads((tmp_path / "runs" / "toy" / "problem.json").read_text())["problem"]
    assert problem["training"]["epochs"] == 2 and problem["optimizer"]["lr"] == 2e-3 and problem["dual_lr"] == 0.25
    assert json.loads((tmp_path / "runs" / "toy" / "metrics.json").read_text())["epochs"] == 2
    assert main(["run", str(path), "--set", "training.batch_size=0", "--out", str(tmp_path / "r2")]) == 2
    assert capsys.readouterr().err.strip() == (f"ceq: error: {path}: --set training.batch_size=0: Expected "
                                               "'training.batch_size' to be an integer in [1, 65536] (got 0)")
    assert main(["run", str(path), "--epochs", "0", "--out", str(tmp_path / "r3")]) == 2
    assert "--epochs 0: Expected 'training.epochs' to be an integer in [1, 100000] (got 0)" in capsys.readouterr().err


def test_the_docs_say_what_the_loader_does_with_1e_3(tmp_path):
    """troubleshooting.md and running.md agree with the loader: ``1e-3`` is a float in files and ``--set``."""
    from pathlib import Path

    spec = load_problem_file(_file(tmp_path, TOY.replace("dual_lr: 1E-4", "dual_lr: 1e-3")),
                             [parse_set("optimizer.lr=1e-3")])
    assert type(spec["dual_lr"]) is float and spec["dual_lr"] == 1e-3 and spec["optimizer"]["lr"] == 1e-3
    assert yaml.safe_load("x: 1e-3")["x"] == "1e-3"  # plain YAML 1.1, which the pages name as the exception
    with pytest.raises(ProblemFileError, match=r"Expected 'dual_lr' to be a number > 0 \(got '1e-3'\)"):
        load_problem_file(_file(tmp_path), {"dual_lr": "1e-3"})  # a string in the Python mapping stays one
    docs = Path(__file__).resolve().parents[2] / "docs"
    troubleshooting, running = ((docs / name).read_text() for name in ("troubleshooting.md", "running.md"))
    for text in (troubleshooting, running):
        assert "reads `1e-3` as a string" not in text and "write `1.0e-3`" not in text
    assert "read `1e-3`, `1E-4` and `1e5` as floats (YAML 1.2" in troubleshooting
    assert "`5e-3`, `1E-4`, `1e5`\nand `.5` are floats" in running
