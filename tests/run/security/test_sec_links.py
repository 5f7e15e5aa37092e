"""Nothing the project writes in a run, sweep or cache folder is written through a symbolic link (issue 29).

Each test puts a link where the project writes, pointing at a file (or folder) outside the run folder,
runs the command and checks the outside file is unchanged: the link is replaced by the new file (atomic
writes) or the command stops with one line naming the link (files opened in place, the ``plots`` folder).
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from _toy import TOY_ACE_EQUALITY

from constrained_eq._utils.atomic_io import LinkRefusedError, atomic_write_text, open_nofollow
from constrained_eq.data.nbody import load_nbody, nbody_cache_path
from constrained_eq.run.cli import main
from constrained_eq.training.checkpointing import save_checkpoint
from constrained_eq.training.run_folder import CsvStream

OUTSIDE = "outside: keep me\n"


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("ceq: error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def _outside(tmp_path: Path, name: str = "outside.txt") -> Path:
    path = tmp_path / name
    path.write_text(OUTSIDE, encoding="utf-8")
    return path


def _link(link: Path, target: Path) -> None:
    if link.is_symlink() or link.is_file():
        link.unlink()
    link.symlink_to(target)


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> tuple[Path, Path, Path]:
    root = tmp_path_factory.mktemp("links")
    problem = root / "small.yaml"
    problem.write_text(TOY_ACE_EQUALITY, encoding="utf-8")
    out = root / "runs"
    assert main(["run", str(problem), "--out", str(out), "--quiet"]) == 0
    return problem, out, out / "small"


def _refused(link: Path, target: Path) -> str:
    return f"{link} is a symbolic link (to {target}); refusing to write through it: remove the link"


def test_open_nofollow_refuses_a_link_in_one_line(tmp_path):
    outside = _outside(tmp_path)
    link = tmp_path / "link"
    link.symlink_to(outside)
    with pytest.raises(LinkRefusedError) as info:
        open_nofollow(link, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    assert str(info.value) == _refused(link, outside)
    dangling = tmp_path / "dangling"
    dangling.symlink_to(tmp_path / "nowhere")
    with pytest.raises(LinkRefusedError):
        open_nofollow(dangling, os.O_WRONLY | os.O_CREAT)
    assert not (tmp_path / "nowhere").exists() and outside.read_text() == OUTSIDE


def test_an_atomic_write_replaces_a_link_and_leaves_its_target(tmp_path):
    outside = _outside(tmp_path)
    link = tmp_path / "metrics.json"
    link.symlink_to(outside)
    atomic_write_text(link, "{}\n")
    assert not link.is_symlink() and link.read_text() == "{}\n" and outside.read_text() == OUTSIDE


@pytest.mark.parametrize("flag", ["--overwrite", "--resume"])
def test_a_lock_that_is_a_link_is_refused_by_overwrite_and_resume(tmp_path, finished, capsys, flag):
    problem, out, run = finished
    outside = _outside(tmp_path)
    _link(run / ".lock", outside)
    try:
        assert main(["run", str(problem), "--out", str(out), "--quiet", flag]) == 2
        assert _one_line_error(capsys) == f"ceq: error: {_refused(run / '.lock', outside)}"
        assert outside.read_text() == OUTSIDE
    finally:
        (run / ".lock").unlink()


def test_a_history_that_is_a_link_is_never_appended_to(tmp_path, capsys):
    outside = _outside(tmp_path, "outside.csv")
    outside.write_text("epoch,loss\n", encoding="utf-8")
    link = tmp_path / "history.csv"
    link.symlink_to(outside)
    with pytest.raises(LinkRefusedError, match="refusing to write through it"):
        CsvStream(link).append({"epoch": 0, "loss": 1.0})
    assert outside.read_text() == "epoch,loss\n"


def test_resume_with_a_history_link_is_one_line(tmp_path, finished, capsys):
    problem, out, run = finished
    saved = (run / "history.csv").read_bytes()
    outside = tmp_path / "outside.csv"
    outside.write_bytes(saved)
    _link(run / "history.csv", outside)
    try:
        assert main(["run", str(problem), "--out", str(out), "--quiet", "--resume"]) == 2
        assert _one_line_error(capsys) == f"ceq: error: {_refused(run / 'history.csv', outside)}"
        assert outside.read_bytes() == saved
    finally:
        (run / "history.csv").unlink()
        (run / "history.csv").write_bytes(saved)


@pytest.mark.parametrize("name", ["constraint_report.txt", "symmetry_report.txt", "symmetry_report.json"])
def test_ceq_report_replaces_report_links_and_leaves_their_targets(tmp_path, finished, capsys, name):
    _, _, run = finished
    outside = _outside(tmp_path)
    _link(run / name, outside)
    assert main(["report", str(run)]) == 0
    assert (run / name).is_file() and not (run / name).is_symlink()
    assert outside.read_text() == OUTSIDE


def test_a_plots_folder_that_is_a_link_is_refused(tmp_path, finished, capsys):
    _, _, run = finished
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    plots = run / "plots"
    moved = tmp_path / "plots.saved"
    if plots.exists():
        plots.rename(moved)
    plots.symlink_to(elsewhere)
    try:
        assert main(["report", str(run)]) == 2
        assert _one_line_error(capsys) == f"ceq: error: {_refused(plots, elsewhere)}"
        assert list(elsewhere.iterdir()) == []
    finally:
        plots.unlink()
        if moved.exists():
            moved.rename(plots)


def test_a_plot_file_that_is_a_link_is_replaced(tmp_path, finished, capsys):
    _, _, run = finished
    outside = _outside(tmp_path)
    _link(run / "plots" / "curves.png", outside)
    assert main(["report", str(run)]) == 0
    assert not (run / "plots" / "curves.png").is_symlink() and outside.read_text() == OUTSIDE


def test_checkpoint_and_manifest_links_are_replaced(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    targets = {name: _outside(tmp_path, f"outside-{name}") for name in ("checkpoint.pt", "checkpoints.json")}
    for name, target in targets.items():
        (run / name).symlink_to(target)
    save_checkpoint({"epoch": torch.tensor(1)}, run / "checkpoint.pt")
    save_checkpoint({"epoch": torch.tensor(2)}, run / "checkpoint.pt")
    assert all(target.read_text() == OUTSIDE for target in targets.values())
    assert not any((run / name).is_symlink() for name in ("checkpoint.pt", "checkpoint.prev.pt", "checkpoints.json"))


def test_an_nbody_cache_that_is_a_link_is_rebuilt_in_place_of_the_link(tmp_path):
    params = dict(n_train=2, n_val=1, n_test=1, seed=1, clip="axis", field=None, frame_in=1, frame_out=2)
    path = nbody_cache_path(tmp_path, **params)
    outside = _outside(tmp_path)
    path.symlink_to(outside)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        arrays = load_nbody(tmp_path, **params)
    assert any(str(path) in str(w.message) for w in caught)
    assert outside.read_text() == OUTSIDE and path.is_file() and not path.is_symlink()
    with np.load(path, allow_pickle=False) as data:
        assert set(data.files) == set(arrays)


@pytest.mark.parametrize("name", ["study.db", ".ask.lock"])
def test_a_sweep_database_or_lock_that_is_a_link_is_refused(tmp_path, capsys, name):
    problem = tmp_path / "small.yaml"
    problem.write_text(TOY_ACE_EQUALITY, encoding="utf-8")
    folder = tmp_path / "runs" / "small-sweep"
    folder.mkdir(parents=True)
    target = _outside(tmp_path)
    _link(folder / name, target)
    assert main(["sweep", str(problem), "--param", "optimizer.lr=choice:1e-3,1e-2", "--out",
                 str(tmp_path / "runs")]) == 2
    assert _one_line_error(capsys) == f"ceq: error: {_refused(folder / name, target)}"
    assert target.read_text(encoding="utf-8") == OUTSIDE


def test_a_tensorboard_folder_that_is_a_link_is_refused(tmp_path, capsys):
    import shutil

    problem = tmp_path / "small.yaml"
    problem.write_text(TOY_ACE_EQUALITY + "logging: {tensorboard: true}\n", encoding="utf-8")
    assert main(["run", str(problem), "--out", str(tmp_path / "runs"), "--quiet"]) == 0
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    board = tmp_path / "runs" / "small" / "tensorboard"
    shutil.rmtree(board)
    board.symlink_to(elsewhere)
    assert main(["run", str(problem), "--out", str(tmp_path / "runs"), "--quiet", "--resume"]) == 2
    assert _one_line_error(capsys) == f"ceq: error: {_refused(board, elsewhere)}"
    assert list(elsewhere.iterdir()) == []
