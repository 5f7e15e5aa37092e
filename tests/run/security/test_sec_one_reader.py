"""One limited reader for every user text: sweep files and ``--set`` values get the problem files' limits.

An alias bomb in a sweep file's ``set:`` section (8 levels of 9 aliases: 9⁸ ≈ 43 million values once
expanded) used to run for tens of seconds and take gigabytes before it was refused for another reason;
through :func:`~constrained_eq.run.problem_yaml.parse_yaml` it is refused while the events are counted,
before anything is built, with the file and the line, through every entry point.
"""

from __future__ import annotations

import time

import pytest

from constrained_eq.run.cli import main
from constrained_eq.run.overrides import parse_set
from constrained_eq.run.problem_yaml import MAX_NODES, ProblemFileError
from constrained_eq.run.sweep_file import load_sweep

LEVELS = "abcdefgh"
BOMB = "".join(f"  {c}: &{c} [{', '.join([f'*{p}'] * 9) if p else ', '.join(['x'] * 9)}]\n"
               for p, c in zip(["", *LEVELS[:-1]], LEVELS, strict=True))
SWEEP = "problem: ../problems/toy.yaml\nparams:\n  optimizer.lr: loguniform:1e-4:1e-2\nset:\n" + BOMB


def test_a_sweep_file_alias_bomb_is_refused_in_milliseconds(tmp_path):
    path = tmp_path / "bomb.yaml"
    path.write_text(SWEEP)
    began = time.perf_counter()
    with pytest.raises(ProblemFileError, match=rf"bomb\.yaml:\d+: the file holds more than {MAX_NODES} values"):
        load_sweep(path)
    assert time.perf_counter() - began < 1.0  # counted on the events: nothing is expanded


def test_the_sweep_command_prints_one_line_and_runs_nothing(tmp_path, capsys):
    path = tmp_path / "bomb.yaml"
    path.write_text(SWEEP)
    assert main(["sweep", str(path), "--out", str(tmp_path / "runs")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"ceq: error: {path}:") and "once its aliases" in err and err.count("\n") == 1
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize(("text", "message"), [
    ("a.b=[&a [x, x, x, x, x, x, x, x, x, x], &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a], "
     "&c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b], [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c, *c]]", "once its aliases"),
    ("a.b=" + "[" * 100 + "]" * 100, "nesting deeper than"),
    ("a.b=!!binary aGVsbG8=", "Expected a plain value"),
    ("a.b=" + "x" * 70_000, "more than the 65536 allowed"),
])
def test_set_values_get_the_same_limits(text, message):
    with pytest.raises(ValueError, match=message) as refused:
        parse_set(text)
    assert str(refused.value).startswith("--set a.b=") and len(str(refused.value)) < 600


def test_a_sweep_file_that_is_not_a_mapping_is_named(tmp_path):
    path = tmp_path / "list.yaml"
    path.write_text("- problem: a.yaml\n")
    with pytest.raises(ProblemFileError, match=r"list\.yaml:1: Expected the sweep file to be a mapping"):
        load_sweep(path)


@pytest.mark.parametrize("kind", ["history", "metrics", "checkpoint", "csv_stream", "cache", "sweep"])
def test_a_fifo_is_refused_at_once_not_read(tmp_path, kind):
    import os

    from constrained_eq._utils.atomic_io import NotRegularFileError
    from constrained_eq.data.nbody import load_nbody, nbody_cache_path
    from constrained_eq.training.run_folder import CsvStream, load_checkpoint, read_csv, read_json

    params = {"n_train": 2, "n_val": 1, "n_test": 1}
    path = {"history": tmp_path / "history.csv", "metrics": tmp_path / "metrics.json",
            "checkpoint": tmp_path / "checkpoint.pt", "csv_stream": tmp_path / "steps.csv",
            "cache": nbody_cache_path(tmp_path, **params), "sweep": tmp_path / "sweep.yaml"}[kind]
    path.parent.mkdir(parents=True, exist_ok=True)
    os.mkfifo(path)  # opening it for reading would block until a writer came
    import threading

    def unblock() -> None:  # should the FIFO be opened after all, a writer comes after 3 s: the test fails, not hangs
        if not done.wait(3.0):
            os.close(os.open(path, os.O_WRONLY))

    done = threading.Event()
    threading.Thread(target=unblock, daemon=True).start()
    read = {"history": read_csv, "metrics": read_json, "checkpoint": load_checkpoint, "csv_stream": CsvStream,
            "cache": lambda p: load_nbody(tmp_path, **params), "sweep": load_sweep}[kind]
    error = ProblemFileError if kind == "sweep" else NotRegularFileError
    try:
        with pytest.raises(error, match="FIFO" if kind != "sweep" else "not a file"):
            read(path)
    finally:
        done.set()
