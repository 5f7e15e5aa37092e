"""Every line names its cause: storage URLs, foreign run folders, empty folder names, look-alike keys, pipes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from _toy import TOY_QUICK

from constrained_eq.run.cli import main

ROOT = Path(__file__).resolve().parents[3]
TOY = TOY_QUICK


@pytest.mark.parametrize(("url", "cause"), [
    ("sqlite:////no/such/folder/study.db", "OperationalError"),
    ("nonsense", "ArgumentError"),
    ("postgresql://me:secret@localhost/db", "ImportError"),
])
def test_a_bad_storage_url_is_one_line_naming_it_and_nothing_is_written(tmp_path, capsys, url, cause):
    path = tmp_path / "toy.yaml"
    path.write_text(TOY)
    out = tmp_path / "runs"
    assert main(["sweep", str(path), "--param", "optimizer.lr=choice:1e-3,1e-2", "--storage", url,
                 "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("ceq: error: --storage ") and f"cannot open the study storage ({cause}" in err
    assert "secret" not in err and err.count("\n") == 1
    assert not out.exists()  # no empty sweep folder left behind


def test_report_on_a_csv_that_is_not_a_history(tmp_path, capsys):
    (tmp_path / "history.csv").write_text("x,y\n1,2\n")
    assert main(["report", str(tmp_path)]) == 2
    assert "has no 'epoch' column" in capsys.readouterr().err
    assert not (tmp_path / "plots").exists()


def test_an_empty_out_is_refused_not_taken_for_the_current_folder(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "toy.yaml").write_text(TOY)
    with pytest.raises(SystemExit) as refused:
        main(["run", "toy.yaml", "--out", ""])
    assert refused.value.code == 2 and "--out: an empty name is no folder" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["toy.yaml"]


def test_an_empty_ceq_cache_means_the_default_not_the_current_folder(monkeypatch):
    from constrained_eq.data.nbody import nbody_cache_path

    monkeypatch.setenv("CEQ_CACHE", "")
    assert nbody_cache_path(n_train=2).parent == Path.home() / ".cache" / "constrained_eq"


@pytest.mark.parametrize(("key", "named"), [("ep\u043echs", "U+043E CYRILLIC SMALL LETTER O"),
                                            ("\u200bseed", "U+200B ZERO WIDTH SPACE")])
def test_a_look_alike_key_names_the_hidden_character(tmp_path, capsys, key, named):
    path = tmp_path / "toy.yaml"
    path.write_text(TOY.replace("training: {epochs: 1, batch_size: 16}", f"training: {{{key}: 1}}"), encoding="utf-8")
    assert main(["run", str(path), "--out", str(tmp_path / "runs")]) == 2
    assert f"(it holds {named}: retype it)" in capsys.readouterr().err


def _report(args: list[str], **kwargs) -> subprocess.CompletedProcess:
    kwargs = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, **kwargs}
    return subprocess.run([sys.executable, "-m", "constrained_eq", "report", *args], cwd=ROOT, check=False, **kwargs)


@pytest.fixture(scope="module")
def run_folder(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("report")
    (folder / "toy.yaml").write_text(TOY)
    assert main(["run", str(folder / "toy.yaml"), "--out", str(folder), "--quiet"]) == 0
    return folder / "toy"


def test_report_on_an_ascii_only_terminal_escapes_what_it_cannot_print(run_folder):
    done = _report([str(run_folder)], env={**__import__("os").environ, "PYTHONIOENCODING": "ascii"})
    assert done.returncode == 0 and b"\\u03bb" in done.stdout  # λ written as \u03bb, not an error


def test_report_into_a_closed_pipe_ends_quietly(run_folder):
    import os

    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before anything is written (as `ceq report … | head -0`)
    try:
        done = _report([str(run_folder)], stdout=write_end, timeout=120)
    finally:
        os.close(write_end)
    assert done.returncode == 1 and done.stderr == b""  # no traceback, no advice about --out


def test_a_cache_failure_points_at_ceq_cache_not_at_out(tmp_path, monkeypatch):
    import errno

    from constrained_eq.run.cli_output import one_line

    monkeypatch.setenv("CEQ_CACHE", str(tmp_path / "cache"))
    in_cache = OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "cache" / "nbody_1.npz"))
    status, message = one_line(in_cache, "toy.yaml")
    assert status == 1 and "set CEQ_CACHE to a writable folder" in message and "--out" not in message
    in_run = OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "runs" / "toy" / "checkpoint.pt"))
    assert "choose another --out" in one_line(in_run, "toy.yaml")[1]


def test_task_options_whose_data_would_not_fit_in_memory_are_refused_before_allocating(tmp_path, capsys, monkeypatch):
    from constrained_eq.run import problem_file
    from constrained_eq.tasks.toy_rotation import ToyRotation

    pages = {"SC_PAGE_SIZE": 4096, "SC_PHYS_PAGES": 16 * 2**30 // 4096}  # a machine with 16 GiB
    monkeypatch.setattr(problem_file.os, "sysconf", pages.__getitem__)

    options = {"points": 100_000, "n_train": 512, "n_val": 128, "n_test": 128}
    assert ToyRotation.data_bytes(options) == 4 * (100_000**2 + 6 * 768 * 100_000)  # the k×k matrix dominates
    path = tmp_path / "big.yaml"
    path.write_text(TOY.replace("options: {n_train: 32, n_val: 16, n_test: 16, breaking: 0.2}",
                                "options: {points: 100000}"))
    assert main(["run", str(path), "--out", str(tmp_path / "runs")]) == 2
    err = capsys.readouterr().err
    # 4 · (10¹⁰ + 6 · 768 · 10⁵) B = 41,843,200,000 B = 38.97 GiB
    assert f"{path}:3: Expected 'task.options' whose data fit in memory (got about 39.0 GiB of data, on a " \
           "machine with 16.0 GiB); lower the sizes (points)" in err
    assert not (tmp_path / "runs").exists()
    # the bound is half the memory: 39 GiB of data on a 64 GiB machine is refused too (it would swap)
    pages["SC_PHYS_PAGES"] = 64 * 2**30 // 4096
    assert main(["run", str(path), "--out", str(tmp_path / "runs")]) == 2
    assert "on a machine with 64.0 GiB" in capsys.readouterr().err
