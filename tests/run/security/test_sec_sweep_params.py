"""Sweep parameters that collide are refused with one line naming them (issue 29)."""

from __future__ import annotations

import pytest
from _toy import TOY_ACE_EQUALITY

from constrained_eq.run.cli import main
from constrained_eq.run.sweep_file import parse_param


def _sweep(tmp_path, capsys, *extra):
    path = tmp_path / "small.yaml"
    path.write_text(TOY_ACE_EQUALITY)
    status = main(["sweep", str(path), "--out", str(tmp_path / "runs"), *extra])
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("ceq: error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    assert not (tmp_path / "runs").exists()  # refused before anything is written
    return status, lines[0]


@pytest.mark.parametrize("text, message", [
    ("optimizer.lr=choice:1,1.0", "--param optimizer.lr=choice:1,1.0: Expected distinct choices (got [1, 1.0]: 1 and "
                                  "1.0 are the same value)"),
    ("dual_lr=choice:1e-3,0.001", "--param dual_lr=choice:1e-3,0.001: Expected distinct choices (got [0.001, 0.001]: "
                                  "0.001 and 0.001 are the same value)"),
])
def test_choices_that_are_the_same_value_are_refused(text, message):
    with pytest.raises(ValueError) as info:
        parse_param(text)
    assert str(info.value) == message


def test_the_same_choices_on_the_command_line_are_one_line(tmp_path, capsys):
    status, line = _sweep(tmp_path, capsys, "--param", "optimizer.lr=choice:1,1.0")
    assert status == 2 and "Expected distinct choices (got [1, 1.0]: 1 and 1.0 are the same value)" in line


def test_a_repeated_param_key_is_refused_naming_both(tmp_path, capsys):
    status, line = _sweep(tmp_path, capsys, "--param", "optimizer.lr=choice:1e-3,1e-2",
                          "--param", "optimizer.lr=loguniform:1e-4:1e-2")
    assert status == 2
    assert line == ("ceq: error: Expected each --param key once (got '--param optimizer.lr=choice:1e-3,1e-2' and "
                    "'--param optimizer.lr=loguniform:1e-4:1e-2')")


def test_repeated_seeds_are_refused(tmp_path, capsys):
    status, line = _sweep(tmp_path, capsys, "--param", "optimizer.lr=choice:1e-3,1e-2", "--seeds", "0,0")
    assert status == 2
    assert line == ("ceq: error: Expected distinct seeds (got 0 more than once in [0, 0]): each seed is one run of "
                    "every trial")


def test_a_swept_training_seed_and_seeds_are_refused(tmp_path, capsys):
    status, line = _sweep(tmp_path, capsys, "--param", "training.seed=choice:1,2", "--seeds", "0,1")
    assert status == 2
    assert line == ("ceq: error: Expected either seeds or a swept 'training.seed', not both (got '--param "
                    "training.seed=choice:1,2' and seeds [0, 1]): each seed sets training.seed")
