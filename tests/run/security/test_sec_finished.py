"""Finished runs keep their facts (issue 29): a no-op resume keeps metrics.json's verdicts and wall time;
``--overwrite`` removes the run marker last; stale temporary files of interrupted writes are cleaned."""

from __future__ import annotations

import json

import pytest
from _toy import TOY_ACE_EQUALITY

from constrained_eq.run.cli import main
from constrained_eq.training import run_folder as runs_module
from constrained_eq.training.run_folder import MARKER


def _run(path, out, *extra):
    return main(["run", str(path), "--out", str(out), "--quiet", *extra])


@pytest.fixture
def finished(tmp_path):
    path, out = tmp_path / "small.yaml", tmp_path / "runs"
    path.write_text(TOY_ACE_EQUALITY)
    assert _run(path, out) == 0
    return path, out, out / "small"


def test_resuming_a_finished_run_keeps_its_verdicts_and_wall_time(finished):
    path, out, run = finished
    before = json.loads((run / "metrics.json").read_text())
    assert before["feasibility"] and before["wall_seconds"] > 0
    assert _run(path, out, "--resume") == 0
    after = json.loads((run / "metrics.json").read_text())
    assert after["feasibility"] == before["feasibility"]
    assert after["wall_seconds"] == before["wall_seconds"]
    assert after["epochs"] == before["epochs"]


def test_an_overwrite_that_crashes_leaves_the_marker_and_can_be_repeated(finished, monkeypatch, capsys):
    path, out, run = finished
    (run / "extra").mkdir()
    (run / "extra" / "file.txt").write_text("x")

    def crash(*args, **kwargs):
        raise OSError(5, "Input/output error (simulated)", str(run / "extra"))

    monkeypatch.setattr(runs_module.shutil, "rmtree", crash)
    assert _run(path, out, "--overwrite") != 0
    assert (run / MARKER).is_file()
    monkeypatch.undo()
    assert _run(path, out, "--overwrite") == 0
    assert (run / MARKER).is_file() and not (run / "extra").exists()


@pytest.mark.parametrize("flag", ["--resume", "--overwrite"])
def test_stale_temporary_files_are_removed_on_the_next_start(finished, flag):
    path, out, run = finished
    stale = [run / ".checkpoint.pt.ab12cd_4.tmp", run / ".metrics.json.zz99yy88.tmp"]
    for file in stale:
        file.write_bytes(b"partial")
    kept = run / "notes.tmp"
    kept.write_text("mine")
    assert _run(path, out, flag) == 0
    assert not any(file.exists() for file in stale)
    assert kept.exists() == (flag == "--resume")
