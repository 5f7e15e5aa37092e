"""Lightning and Accelerate stay optional: the package imports neither, the extras install them, CI tests them."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FRAMEWORKS = ("lightning", "pytorch_lightning", "lightning_utilities", "accelerate", "torchmetrics")


@pytest.mark.parametrize("statement", ["import constrained_eq", "import constrained_eq.integrations",
                                       "import constrained_eq.run.cli"])
def test_importing_the_package_imports_neither_framework(tmp_path, statement):
    code = f"{statement}; import sys; print(sorted(m for m in {FRAMEWORKS!r} if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_an_integration_imports_its_framework(tmp_path):
    code = ("import constrained_eq.integrations.accelerate, sys; "
            f"print(sorted(m for m in {FRAMEWORKS!r} if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr
    assert "accelerate" in done.stdout and "lightning" not in done.stdout  # the check above can see a framework


def test_the_extras_install_the_frameworks_and_the_test_extra_holds_them():
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert [r.split(">=")[0] for r in extras["lightning"]] == ["lightning"]
    assert [r.split(">=")[0] for r in extras["accelerate"]] == ["accelerate"]
    assert set(extras["lightning"] + extras["accelerate"]) <= set(extras["test"])
    dependencies = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    assert not any(d.startswith(("lightning", "accelerate")) for d in dependencies)


def test_no_module_outside_the_integrations_imports_them():
    """The layer order lets higher layers import ``integrations``; none does, so no framework is reachable."""
    from test_architecture import graph

    edges = graph()
    assert any(name.startswith("constrained_eq.integrations.") for name in edges)  # the graph sees them
    importers = sorted(f"{name}:{line}" for name, targets in edges.items() for target, line in targets
                       if target.startswith("constrained_eq.integrations") and not name.startswith(
                           "constrained_eq.integrations"))
    assert not importers
