"""The qm9, modelnet and mocap tasks: every problem file runs one epoch on tiny synthetic data,
missing real data fails before training naming the files, and QM9 runs on real qm9pack data."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import yaml

from constrained_eq.run.problem_file import load_problem_file
from constrained_eq.run.problem_yaml import ProblemFileError
from constrained_eq.run.runner import run_problem

ROOT = Path(__file__).resolve().parents[2]
TINY = {
    "qm9": {"source": "synthetic", "limit": 40},
    "modelnet": {"source": "synthetic", "n_points": 32, "num_per_class": 5},
    "mocap": {"source": "synthetic", "num_trials": 1, "delta_frame": 10},
}
TINY_MODELS = {
    "schnet": {"hidden_channels": 8, "num_filters": 8, "num_interactions": 2},
    "vn_pointnet": {"channels": [4, 4, 8], "k": 4, "hidden": 8},
    "vn_dgcnn": {"channels": [4, 4, 4], "emb_channels": 8, "k": 4, "hidden": 8},
    "egno": {"hidden_nf": 8, "n_layers": 2, "num_timesteps": 2},
}
FILES = sorted(p.name for p in (ROOT / "problems").glob("*.yaml")
               if p.name.startswith(("qm9_", "modelnet_", "mocap_")))


def _tiny(tmp_path: Path, name: str, task_options: dict | None = None) -> Path:
    raw = yaml.safe_load((ROOT / "problems" / name).read_text(encoding="utf-8"))
    task = raw["task"]["name"]
    raw["task"]["options"] = {**TINY[task], **(task_options or {})}
    raw["model"]["options"].update(TINY_MODELS[raw["model"]["name"]])
    raw["training"].update(epochs=1, batch_size=8, checkpoint_every=1)
    path = tmp_path / name
    path.write_text(yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
    return path


def test_every_real_data_problem_file_is_listed() -> None:
    assert len(FILES) >= 10
    gallery = (ROOT / "docs" / "gallery.md").read_text(encoding="utf-8")
    for path in (ROOT / "problems").glob("*.yaml"):
        assert f"problems/{path.name}" in gallery


@pytest.mark.parametrize("name", FILES)
def test_problem_file_runs_one_epoch_on_synthetic_data(tmp_path: Path, name: str) -> None:
    spec = load_problem_file(_tiny(tmp_path, name))
    summary = run_problem(spec, tmp_path / "run", progress=False)
    assert (tmp_path / "run" / "metrics.json").exists()
    assert summary["metric"] in ("mae", "accuracy", "loss")  # mocap: the loss is the MSE
    assert summary["test_projected"][summary["metric"]] >= 0


@pytest.mark.parametrize(("name", "options", "match"), [
    ("modelnet_vn_dgcnn_ace.yaml", {"source": "h5", "root": "{tmp}/nowhere"}, r"nowhere.*shape_names\.txt"),
    ("modelnet_vn_dgcnn_ace.yaml", {"source": "off", "root": "{tmp}/nowhere"}, r"nowhere.*\.off"),
    ("mocap_egno_base.yaml", {"source": "cmu", "root": "{tmp}/cmu", "subject": 9}, r"cmu.*09.*09\.asf"),
    ("qm9_schnet_base.yaml", {"source": "pyg_root", "root": "{tmp}/qm9"}, r"qm9.*raw"),
])
def test_missing_data_fails_before_training_naming_the_files(tmp_path: Path, name: str, options: dict,
                                                             match: str) -> None:
    options = {k: v.format(tmp=tmp_path) if isinstance(v, str) else v for k, v in options.items()}
    spec = load_problem_file(_tiny(tmp_path, name, options))
    with pytest.raises(ProblemFileError, match=match):
        run_problem(spec, tmp_path / "run", progress=False)
    assert not (tmp_path / "run" / "metrics.json").exists()


@pytest.mark.skipif(importlib.util.find_spec("qm9pack") is None, reason="qm9pack is not installed")
def test_qm9_on_real_qm9pack_molecules(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CEQ_CACHE", str(tmp_path / "cache"))
    spec = load_problem_file(_tiny(tmp_path, "qm9_schnet_ace.yaml", {"source": "qm9pack", "limit": 60}))
    summary = run_problem(spec, tmp_path / "run", progress=False)
    assert (tmp_path / "cache" / "qm9pack" / "processed" / "qm9pack_60.pt").exists()
    assert 0 < summary["test_projected"]["mae"] < 10  # eV, HOMO of real molecules
    assert summary["test_projected"]["equivariance_error"] < 1e-4  # the deployed f^eq is invariant
