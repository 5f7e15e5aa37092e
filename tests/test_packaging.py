"""Packaging: licence file, typing marker, version in one place, ``ceq --version`` and ``python -m constrained_eq``."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

import constrained_eq
from constrained_eq.run.cli import main

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_license_file_matches_the_declared_licence():
    assert PYPROJECT["project"]["license"] == {"text": "MIT"}
    text = (ROOT / "LICENSE").read_text()
    assert text.startswith("MIT License\n") and "Permission is hereby granted, free of charge" in text
    assert "License :: OSI Approved :: MIT License" in PYPROJECT["project"]["classifiers"]


def test_package_is_typed():
    shipped = PYPROJECT["tool"]["setuptools"]["package-data"]["constrained_eq"]
    assert shipped == ["py.typed", "problem.schema.json"]  # the problem files' JSON Schema ships too
    assert all((ROOT / "constrained_eq" / name).exists() for name in shipped)
    assert "Typing :: Typed" in PYPROJECT["project"]["classifiers"]


def test_version_has_one_source(capsys):
    assert PYPROJECT["project"]["dynamic"] == ["version"] and "version" not in PYPROJECT["project"]
    assert PYPROJECT["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "constrained_eq.__version__"}
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0 and capsys.readouterr().out == f"constrained_eq {constrained_eq.__version__}\n"


def test_python_dash_m_is_the_ceq_command(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-m", "constrained_eq", "--version"], capture_output=True, text=True,
                         env=env, cwd=tmp_path, timeout=120)
    assert out.returncode == 0 and out.stdout == f"constrained_eq {constrained_eq.__version__}\n"
    out = subprocess.run([sys.executable, "-m", "constrained_eq", "run", "missing.yaml"], capture_output=True,
                         text=True, env=env, cwd=tmp_path, timeout=120)
    assert out.returncode == 2 and out.stderr.strip() == "ceq: error: missing.yaml: no such file"


def test_optional_extras_are_in_the_test_extra():
    extras = PYPROJECT["project"]["optional-dependencies"]
    assert extras["tensorboard"] == ["tensorboard>=2.10"] and extras["sweep"] == ["optuna>=3.4"]
    assert set(extras["tensorboard"] + extras["sweep"]) <= set(extras["test"])
    assert not any(req.startswith("torch") for group in extras.values() for req in group)  # torch stays as installed
