"""Problem files, sweep files and --set values mean what a reader of YAML 1.2 sees (issue 29).

PyYAML's YAML 1.1 resolvers read ``no``/``off``/``yes``/``on`` as booleans, ``010`` as octal 8 and ``1:30``
as base-60 90; the project's loader reads the strings ``'no'``, ``'off'``, ``'yes'``, ``'on'``, the integer
10 and the string ``'1:30'``, and the schema refuses a string where a boolean or a number is expected.
"""

from __future__ import annotations

import pytest
import yaml
from _toy import TOY_ACE_EQUALITY

from constrained_eq.run.overrides import parse_set
from constrained_eq.run.problem_file import load_problem_file
from constrained_eq.run.problem_yaml import LineLoader, ProblemFileError, plain
from constrained_eq.run.sweep_file import load_sweep

BASE = TOY_ACE_EQUALITY.replace("training: {epochs: 2, batch_size: 16}\n", "")


def _load(text: str) -> dict:
    return plain(yaml.load(text, Loader=LineLoader))  # noqa: S506 (a SafeLoader)


@pytest.mark.parametrize("text, value", [
    ("no", "no"), ("off", "off"), ("yes", "yes"), ("on", "on"), ("No", "No"), ("OFF", "OFF"), ("y", "y"),
    ("true", True), ("False", False), ("TRUE", True),
    ("010", 10), ("08", 8), ("0o17", 15), ("0x1f", 31), ("-5", -5), ("+3", 3),
    ("1:30", "1:30"), ("1_000", 1000), ("1_0.5", 10.5), ("0b101", "0b101"), ("=", "="),
    ("1e-3", 0.001), ("1E5", 100000.0), ("1.5", 1.5), (".5", 0.5), ("~", None), ("null", None),
])
def test_plain_scalars_follow_the_yaml_1_2_core_schema(text, value):
    loaded = _load(f"a: {text}\n")["a"]
    assert loaded == value and type(loaded) is type(value)


def test_keys_named_on_and_no_stay_strings():
    assert _load("on: 1\nno: 2\n") == {"on": 1, "no": 2}


@pytest.mark.parametrize("word", ["no", "off", "yes", "on"])
def test_a_yes_no_on_off_boolean_is_refused_naming_file_line_and_key(tmp_path, word):
    path = tmp_path / "p.yaml"
    path.write_text(BASE + f"training: {{epochs: 2, batch_size: 16}}\nlogging:\n  tensorboard: {word}\n")
    with pytest.raises(ProblemFileError) as info:
        load_problem_file(path)
    assert str(info.value) == f"{path}:11: Expected 'logging.tensorboard' to be true or false (got '{word}')"


def test_010_is_ten_epochs(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text(BASE + "training: {epochs: 010, batch_size: 16}\n")
    assert load_problem_file(path)["training"]["epochs"] == 10


def test_base_60_is_a_string_refused_where_a_number_is_expected(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text(BASE + "training:\n  epochs: 1:30\n  batch_size: 16\n")
    with pytest.raises(ProblemFileError) as info:
        load_problem_file(path)
    assert str(info.value) == f"{path}:10: Expected 'training.epochs' to be an integer in [1, 100000] (got '1:30')"


def test_set_values_go_through_the_same_loader(tmp_path):
    assert parse_set("logging.tensorboard=off").value == "off"
    assert parse_set("training.epochs=010").value == 10
    assert parse_set("training.epochs=1:30").value == "1:30"
    path = tmp_path / "p.yaml"
    path.write_text(TOY_ACE_EQUALITY)
    with pytest.raises(ProblemFileError, match=r"Expected 'logging.tensorboard' to be true or false \(got 'no'\)"):
        load_problem_file(path, [parse_set("logging.tensorboard=no")])


def test_sweep_files_go_through_the_same_loader(tmp_path):
    (tmp_path / "p.yaml").write_text(TOY_ACE_EQUALITY)
    sweep = tmp_path / "s.yaml"
    sweep.write_text("problem: p.yaml\nparams:\n  optimizer.lr: choice:1e-3,1e-2\nseeds: [010]\n"
                     "set:\n  logging.tensorboard: off\n")
    loaded = load_sweep(sweep)
    assert loaded["seeds"] == [10] and loaded["set"] == {"logging.tensorboard": "off"}
    sweep.write_text("problem: p.yaml\ntrials: 1:30\n")
    with pytest.raises(ProblemFileError) as info:
        load_sweep(sweep)
    assert str(info.value) == f"{sweep}:2: Expected 'trials' to be an integer ≥ 1 (got '1:30')"
