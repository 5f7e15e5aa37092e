"""Run folders never escape --out, --overwrite deletes only run folders, one writer at a time, no lost runs."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import pytest
import torch
from _toy import TOY_ACE_EQUALITY

from constrained_eq.run import runner as runner_module
from constrained_eq.run.cli import main
from constrained_eq.training.run_folder import MARKER, RunFolderError, RunLock, run_folder, run_name

ROOT = Path(__file__).resolve().parents[3]
SMALL = TOY_ACE_EQUALITY


def _write(folder: Path, name: str = "small.yaml", text: str = SMALL) -> Path:
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def _run(path: Path, out: Path, *extra: str) -> int:
    return main(["run", str(path), "--out", str(out), "--quiet", *extra])


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("ceq: error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


# ----------------------------------------------------------------------------- names and --out
@pytest.mark.parametrize("name", ["...yaml", "..yml", ".yaml", "my run.yaml", "réglage ü.yaml", "a;b$(x)`.yaml"])
def test_odd_file_names_give_a_run_folder_inside_out(tmp_path, capsys, name):
    problems = tmp_path / "problems"
    problems.mkdir()
    path = _write(problems, name)
    sentinel = _write(tmp_path, "precious.txt", "keep me")
    out = tmp_path / "runs"
    assert _run(path, out, "--epochs", "1") == 0
    assert _run(path, out, "--epochs", "1", "--overwrite") == 0
    (folder,) = out.iterdir()
    assert folder.parent == out and (folder / "checkpoint.pt").is_file() and (folder / MARKER).is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["precious.txt", "problems", "runs"]
    assert sorted(p.name for p in problems.iterdir()) == [name]
    assert sentinel.read_text() == "keep me"
    assert f"run folder: {folder}" in capsys.readouterr().out


def test_run_names_are_single_safe_components():
    assert run_name("...yaml") == "run" and run_name("..yml") == "run" and run_name("a/b/..yaml") == "run"
    assert run_name("my run.yaml") == "my_run" and run_name("x.yaml", "cr") == "x-cr"
    assert run_name("e\u0301.yaml") == "\u00e9"  # NFC: one letter, whatever the file system gave
    assert run_name("a" * 300 + ".yaml") == "a" * 100


def test_a_run_folder_that_links_outside_out_is_refused(tmp_path, capsys):
    out, elsewhere = tmp_path / "runs", tmp_path / "elsewhere"
    out.mkdir()
    elsewhere.mkdir()
    (out / "small").symlink_to(elsewhere)
    with pytest.raises(RunFolderError, match="outside --out"):
        run_folder(out, "small.yaml")
    assert _run(_write(tmp_path), out, "--epochs", "1") == 2
    assert "outside --out" in _one_line_error(capsys)
    assert list(elsewhere.iterdir()) == []


def test_overwrite_never_deletes_a_folder_without_the_run_marker(tmp_path, capsys):
    path, out = _write(tmp_path), tmp_path / "runs"
    folder = out / "small"
    folder.mkdir(parents=True)
    (folder / "problem.json").write_text("{}")
    (folder / "precious.txt").write_text("keep me")
    assert _run(path, out, "--epochs", "1", "--overwrite") == 2
    assert "refusing to delete it: it is not a run folder" in _one_line_error(capsys)
    assert sorted(p.name for p in folder.iterdir()) == ["precious.txt", "problem.json"]


def test_a_foreign_folder_is_never_written_into(tmp_path, capsys):
    path, out = _write(tmp_path), tmp_path / "runs"
    (out / "small").mkdir(parents=True)
    (out / "small" / "notes.txt").write_text("mine")
    assert _run(path, out, "--epochs", "1") == 2
    assert "is not a run folder of constrained_eq" in _one_line_error(capsys)
    assert [p.name for p in (out / "small").iterdir()] == ["notes.txt"]


def test_a_failed_build_writes_nothing_and_the_fixed_file_runs(tmp_path, capsys, monkeypatch):
    path, out = _write(tmp_path), tmp_path / "runs"

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise ValueError("the build failed")

    monkeypatch.setattr(runner_module, "build", broken)
    assert _run(path, out, "--epochs", "1") == 2
    assert not out.exists()
    monkeypatch.undo()
    capsys.readouterr()
    assert _run(path, out, "--epochs", "1") == 0  # neither "--resume" nor "--overwrite" needed


# ----------------------------------------------------------------------------- one writer
def _hold_lock(folder: Path) -> subprocess.Popen:
    code = ("import sys, time; from constrained_eq.training.run_folder import RunLock; lock = RunLock(sys.argv[1]).acquire(); "
            "print('ready', flush=True); time.sleep(120)")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    holder = subprocess.Popen([sys.executable, "-c", code, str(folder)], stdout=subprocess.PIPE, env=env, text=True)
    assert holder.stdout.readline().strip() == "ready"
    return holder


def test_a_second_writer_and_overwrite_are_refused_naming_the_holder(tmp_path, capsys):
    path, out = _write(tmp_path), tmp_path / "runs"
    assert _run(path, out, "--epochs", "1") == 0
    checkpoint = (out / "small" / "checkpoint.pt").read_bytes()
    holder = _hold_lock(out / "small")
    try:
        capsys.readouterr()
        for extra in (["--resume", "--epochs", "2", "--allow-change", "training.epochs"], ["--overwrite"]):
            assert _run(path, out, "--epochs", "1", *extra) == 2
            assert f"process {holder.pid} is running in this run folder" in _one_line_error(capsys)
        assert (out / "small" / "checkpoint.pt").read_bytes() == checkpoint
        with pytest.raises(RunFolderError, match=f"process {holder.pid}"):
            RunLock(out / "small").acquire()
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert _run(path, out, "--epochs", "1", "--overwrite") == 0  # the lock died with its process


# ----------------------------------------------------------------------------- checkpoints
@pytest.fixture(scope="module")
def _finished_run(tmp_path_factory) -> Path:
    """One finished 2-epoch run (a checkpoint after each epoch), copied by the tests that damage it."""
    folder = tmp_path_factory.mktemp("finished")
    path, out = _write(folder), folder / "runs"
    assert _run(path, out) == 0
    assert torch.load(out / "small" / "checkpoint.prev.pt", weights_only=True)["epoch"] == 0
    return out / "small"


@pytest.fixture
def _two_checkpoints_run(tmp_path, _finished_run) -> tuple[Path, Path]:
    shutil.copytree(_finished_run, tmp_path / "runs" / "small")
    return _write(tmp_path), tmp_path / "runs" / "small"


def _save_listed(obj: Any, file: Path) -> None:
    """Save ``obj`` and list its checksum (a structurally wrong file that passes the checksum)."""
    torch.save(obj, file)
    manifest = file.parent / "checkpoints.json"
    data = json.loads(manifest.read_text())
    data["sha256"].append(hashlib.sha256(file.read_bytes()).hexdigest())
    manifest.write_text(json.dumps(data))


def _damage(run: Path, how: str) -> None:
    file = run / "checkpoint.pt"
    if how == "truncated":
        file.write_bytes(file.read_bytes()[: file.stat().st_size // 2])
    elif how == "zeroed":
        file.write_bytes(bytes(file.stat().st_size))
    elif how == "bitflip":
        data = bytearray(file.read_bytes())
        data[len(data) // 2] ^= 0x10
        file.write_bytes(bytes(data))
    elif how == "deleted":
        file.unlink()
    else:
        good = torch.load(file, weights_only=True)
        if how == "bare_tensor":
            _save_listed(torch.zeros(3), file)
        elif how == "missing_key":
            _save_listed({k: v for k, v in good.items() if k != "solver"}, file)
        elif how == "wrong_shape":
            model = good["solver"]["model"]
            key = next(iter(model))
            model[key] = torch.zeros(*model[key].shape, 7)
            _save_listed(good, file)
        elif how == "bad_rng":
            good["loader_rng"] = torch.zeros(3, dtype=torch.uint8)
            _save_listed(good, file)


DAMAGES = ["truncated", "zeroed", "bitflip", "deleted", "bare_tensor", "missing_key", "wrong_shape", "bad_rng"]


@pytest.mark.parametrize("how", DAMAGES)
def test_a_damaged_latest_checkpoint_falls_back_to_the_previous(_two_checkpoints_run, capsys, how):
    path, run = _two_checkpoints_run
    _damage(run, how)
    with pytest.warns(RuntimeWarning, match=r"resumed from the previous checkpoint .*checkpoint\.prev\.pt"):
        assert _run(path, run.parent, "--resume") == 0
    history = (run / "history.csv").read_text().splitlines()
    assert [row.split(",")[0] for row in history[1:]] == ["0", "1"]  # epoch 1 trained again, no row lost
    assert torch.load(run / "checkpoint.pt", weights_only=True)["epoch"] == 1


@pytest.mark.parametrize("how", ["bare_tensor", "missing_key", "wrong_shape", "bad_rng", "truncated"])
def test_both_checkpoints_damaged_is_one_line_naming_files_and_keys(_two_checkpoints_run, capsys, how):
    path, run = _two_checkpoints_run
    _damage(run, how)
    (run / "checkpoint.prev.pt").write_bytes(b"not a checkpoint")
    capsys.readouterr()
    assert _run(path, run.parent, "--resume") == 2
    line = _one_line_error(capsys)
    assert f"{run / 'checkpoint.pt'}:" in line and f"{run / 'checkpoint.prev.pt'}:" in line, line
    expected = {"bare_tensor": "not a checkpoint", "missing_key": "key 'solver'", "wrong_shape": "key 'solver'",
                "bad_rng": "key 'loader_rng'", "truncated": "damaged checkpoint"}[how]
    assert expected in line, line


def test_a_previous_checkpoint_whose_checksum_is_not_listed_is_refused(_two_checkpoints_run, capsys):
    # checkpoints.json keeps the SHA-256 of the last three checkpoints written, so that the fallback is checked too:
    # a previous checkpoint replaced by one that was never written by the run (a weight changed) is damaged
    path, run = _two_checkpoints_run
    previous = torch.load(run / "checkpoint.prev.pt", weights_only=True)
    model = previous["solver"]["model"]
    key = next(iter(model))
    model[key] = model[key] + 1.0
    torch.save(previous, run / "checkpoint.prev.pt")  # not listed in the manifest
    _damage(run, "truncated")
    capsys.readouterr()
    assert _run(path, run.parent, "--resume") == 2
    line = _one_line_error(capsys)
    assert f"{run / 'checkpoint.prev.pt'}: damaged checkpoint: its SHA-256 is not the one recorded" in line, line


# ----------------------------------------------------------------------------- other run files
@pytest.mark.parametrize("name, damage, needle", [
    ("problem.json", b"{not json", "problem.json: damaged run file"),
    ("metrics.json", b"\xff\xfe", "metrics.json: damaged run file"),
    ("history.csv", None, "history.csv: holds 1 rows but the checkpoint was taken after 2"),
    ("history.csv", b"", "history.csv: holds 0 rows"),
    ("best.pt", b"garbage", "best.pt: refusing to load the checkpoint"),
])
def test_damaged_run_files_are_named(_two_checkpoints_run, capsys, name, damage, needle):
    path, run = _two_checkpoints_run
    file = run / name
    if damage is None:  # drop the last row
        file.write_text("\n".join(file.read_text().splitlines()[:-1]) + "\n")
    else:
        file.write_bytes(damage)
    capsys.readouterr()
    assert _run(path, run.parent, "--resume") == 2
    assert needle in _one_line_error(capsys)


def test_a_deleted_history_is_not_resumed_silently(_two_checkpoints_run, capsys):
    path, run = _two_checkpoints_run
    (run / "history.csv").unlink()
    capsys.readouterr()
    assert _run(path, run.parent, "--resume") == 2
    assert "history.csv: holds 0 rows but the checkpoint was taken after 2" in _one_line_error(capsys)


# ----------------------------------------------------------------------------- resume with changes
def test_resume_with_allowed_changes_extends_the_run_and_records_them(tmp_path, capsys):
    path, out = _write(tmp_path), tmp_path / "runs"
    assert _run(path, out) == 0
    first_sha = json.loads((out / "small" / "problem.json").read_text())["sha256"]
    path.write_text(SMALL.replace("lr: 0.01", "lr: 0.002").replace("epochs: 2", "epochs: 3"))
    capsys.readouterr()
    assert _run(path, out, "--resume") == 2
    line = _one_line_error(capsys)
    assert "optimizer.lr: 0.01 -> 0.002" in line and "--allow-change" in line, line
    assert _run(path, out, "--resume", "--allow-change", "optimizer.lr,training.epochs") == 0
    run = out / "small"
    stored = json.loads((run / "problem.json").read_text())
    assert stored["changes"] == [{"changes": ["optimizer.lr: 0.01 -> 0.002", "training.epochs: 2 -> 3"],
                                  "from_sha256": first_sha}]
    checkpoint = torch.load(run / "checkpoint.pt", weights_only=True)
    assert checkpoint["epoch"] == 2
    groups = [g for opt in checkpoint["solver"]["optimizer"]["primal_optimizer_states"]
              for g in opt["param_groups"]] if "primal_optimizer_states" in checkpoint["solver"]["optimizer"] else None
    if groups is not None:
        assert groups[0]["lr"] == 0.002
    assert len((run / "history.csv").read_text().splitlines()) == 4


def test_allow_change_is_limited_to_how_the_run_goes_on(tmp_path, capsys):
    assert _run(_write(tmp_path), tmp_path / "runs", "--resume", "--allow-change", "model.name") == 2
    assert "Expected '--allow-change' to list keys among training.epochs" in _one_line_error(capsys)


def test_an_empty_training_section_takes_epochs_from_the_command_line(tmp_path):
    path = _write(tmp_path, text=SMALL.replace("training: {epochs: 2, batch_size: 16}", "training:"))
    assert _run(path, tmp_path / "runs", "--epochs", "1") == 0


# ----------------------------------------------------------------------------- every failure is one line
@pytest.mark.parametrize("error, status, needle", [
    (RuntimeError("CUDA error: device-side assert\nmore"), 1, "RuntimeError: CUDA error: device-side assert more; "
                                                              "rerun with --debug"),
    (KeyError("x"), 1, "KeyError: 'x'; rerun with --debug"),
    (MemoryError(), 1, "out of memory; lower training.batch_size"),
    (RecursionError("maximum recursion depth exceeded"), 2, "nesting too deep"),
    (OSError(28, "No space left on device", "/full/disk"), 1, "/full/disk: No space left on device"),
])
def test_every_failure_is_one_line_and_debug_shows_the_traceback(tmp_path, capsys, monkeypatch, error, status,
                                                                  needle):
    def failing(*args: Any, **kwargs: Any) -> Any:
        raise error

    monkeypatch.setattr(runner_module, "run_problem", failing)
    path = _write(tmp_path)
    assert _run(path, tmp_path / "runs") == status
    assert needle in _one_line_error(capsys)
    with pytest.raises(type(error)):
        main(["--debug", "run", str(path), "--out", str(tmp_path / "runs"), "--quiet"])


def test_an_unwritable_out_is_one_line(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("a file, not a folder")
    assert _run(_write(tmp_path), blocker / "runs", "--epochs", "1") == 1
    line = _one_line_error(capsys)
    assert str(blocker) in line and "Not a directory" in line, line


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_out_is_one_line(tmp_path, capsys):
    out = tmp_path / "runs"
    out.mkdir()
    out.chmod(0o500)
    try:
        assert _run(_write(tmp_path), out, "--epochs", "1") == 1
        assert "Permission denied" in _one_line_error(capsys)
    finally:
        out.chmod(0o700)


def test_no_warning_is_an_error_on_a_clean_resume(_two_checkpoints_run):
    path, run = _two_checkpoints_run
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        assert _run(path, run.parent, "--resume", "--epochs", "3", "--allow-change", "training.epochs") == 0
