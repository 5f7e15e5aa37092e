"""What starting up imports: nothing heavy before it is used.

Each check runs in a new interpreter (this process has imported everything already) and reads
``sys.modules`` there: ``import constrained_eq`` imports no torch; ``ceq --version``/``--help`` and every
sub-command's ``--help`` import neither torch nor matplotlib; a missing or malformed problem file is
reported before torch is imported; the main job's model never imports PyTorch Geometric. The public names
still resolve on first use, and names written as strings (targets, moved names) still work.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "e3nn", "torch_geometric", "matplotlib", "tensorboard", "optuna", "lightning", "accelerate",
         "numpy", "cooper")


def _imported_after(code: str) -> list[str]:
    """The heavy modules imported once ``code`` has run in a fresh interpreter (its output is discarded)."""
    probe = (f"import sys, io, contextlib\nwith contextlib.redirect_stdout(io.StringIO()), "
             f"contextlib.redirect_stderr(io.StringIO()):\n    {code}\n"
             f"print(__import__('json').dumps([m for m in {HEAVY!r} if m in sys.modules]))")
    done = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("package", ["constrained_eq", "constrained_eq.training", "constrained_eq.models"])
def test_importing_a_package_imports_nothing_heavy(package):
    """The packages with public names resolve them on first use (``constrained_eq.training.fit`` imports torch)."""
    assert _imported_after(f"import {package}") == []


@pytest.mark.parametrize("argv", [["--version"], ["--help"], ["run", "--help"], ["compare", "--help"],
                                  ["sweep", "--help"], ["report", "--help"]])
def test_the_cli_answers_without_torch(argv):
    assert _imported_after(f"from constrained_eq.run.cli import main\n    try: main({argv!r})\n"
                           "    except SystemExit: pass") == []


@pytest.mark.parametrize("command", ["run", "sweep"])
@pytest.mark.parametrize("text", [None, "task: {name: nbody\n", "a: &x [*x]\n", "__bomb__"])
def test_a_missing_or_malformed_file_is_refused_before_torch(tmp_path, text, command):
    path = tmp_path / "problem.yaml"
    if text == "__bomb__":  # 10^9 values once its aliases are expanded: refused by the limited reader
        levels = ["a0: &a0 [1, 1, 1, 1, 1, 1, 1, 1, 1, 1]"]
        levels += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 9)]
        text = "problem: x.yaml\n" + "\n".join(levels) + "\nset: {x: *a8}\n"
    if text is not None:
        path.write_text(text)
    code = (f"from constrained_eq.run.cli import main\n    status = main([{command!r}, {str(path)!r}, '--out', "
            f"{str(tmp_path)!r}])")
    assert _imported_after(code) == []  # neither torch nor Optuna
    done = subprocess.run([sys.executable, "-m", "constrained_eq", "run", str(path), "--out", str(tmp_path)],
                          cwd=ROOT, capture_output=True, text=True, check=False)
    assert done.returncode == 2 and done.stderr.startswith(f"ceq: error: {path}")


def test_the_main_jobs_task_and_model_import_neither_pyg_nor_e3nn():
    imported = _imported_after("from constrained_eq.tasks.nbody import NBody; NBody().model('egnn', hidden_nf=8)")
    assert "torch" in imported and "torch_geometric" not in imported and "e3nn" not in imported


def test_public_names_resolve_on_first_use():
    import constrained_eq as ceq
    from constrained_eq import models

    assert ceq.Solver.__module__ == "constrained_eq.core.solver.engine" and ceq.relax.__module__ == "constrained_eq.homotopy.relax"
    assert models.SEGNN.__module__ == "constrained_eq.models.segnn"
    assert set(ceq.__all__) <= set(dir(ceq)) and set(models.__all__) <= set(dir(models))
    with pytest.raises(AttributeError, match="no attribute 'Solvr'"):
        ceq.Solvr  # noqa: B018


def test_targets_named_by_string_are_registered_on_first_use():
    code = ("import constrained_eq as ceq\n    c = ceq.Inequality(target='false_positive_rate', bound=0.1)\n"
            "    e = ceq.Equality(target='gammas')")
    assert "torch" in _imported_after(code)  # and it did not raise: both names were known


def test_the_console_script_flushes_runs_atexit_and_keeps_the_status(tmp_path):
    marker = tmp_path / "atexit.txt"
    code = ("import atexit, sys\n"
            f"atexit.register(lambda: open({str(marker)!r}, 'w').write('ran'))\n"
            "sys.argv = ['ceq', 'run', 'missing.yaml']\n"
            "from constrained_eq.run.console import console\n"
            "print('buffered line')\n"
            "console()\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=False)
    assert done.returncode == 2 and done.stdout == "buffered line\n"  # a pipe: block-buffered, flushed at the exit
    assert done.stderr == "ceq: error: missing.yaml: no such file\n" and marker.read_text() == "ran"


def test_the_console_script_waits_for_other_threads():
    import threading

    from constrained_eq.run.console import _can_leave_at_once

    assert _can_leave_at_once()
    release = threading.Event()
    worker = threading.Thread(target=release.wait)
    worker.start()
    try:
        assert not _can_leave_at_once()
    finally:
        release.set()
        worker.join()
    assert _can_leave_at_once()
