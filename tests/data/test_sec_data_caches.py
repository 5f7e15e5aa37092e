"""No dataset cache runs code: a pickle payload in any cache file is refused or rebuilt, never unpickled.

Each payload would create a marker file when unpickled; the tests assert the marker is absent.
"""

from __future__ import annotations

import importlib.util
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from constrained_eq.data._safe import UnsafeFileError, no_code_from_files
from constrained_eq.data.nbody import load_nbody
from constrained_eq.data.qm9 import QM9Pack, qm9_from_pyg_root, synthetic_qm9
from constrained_eq.run.cli import main

_spec = importlib.util.spec_from_file_location("_qm9_fixtures", Path(__file__).parents[1] / "data" / "test_qm9.py")
_qm9 = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_qm9)


class Payload:
    """Unpickling this creates ``marker``: a stand-in for arbitrary code in a data file."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self) -> tuple[Any, ...]:
        return (Path.touch, (Path(self.marker),))


def _pyg_root(tmp_path: Path, monkeypatch) -> Path:
    """A PyG QM9 root processed once (without rdkit, from raw/qm9_v3.pt)."""
    monkeypatch.setitem(sys.modules, "rdkit", None)
    raw = tmp_path / "qm9" / "raw"
    raw.mkdir(parents=True)
    torch.save([d.to_dict() for d in synthetic_qm9(4)], raw / "qm9_v3.pt")
    assert len(qm9_from_pyg_root(tmp_path / "qm9")) == 4
    return tmp_path / "qm9"


@pytest.mark.parametrize("name", ["processed/data_v3.pt", "processed/pre_transform.pt", "processed/pre_filter.pt"])
def test_a_payload_in_a_pyg_root_is_refused_not_run(tmp_path, monkeypatch, name):
    root = _pyg_root(tmp_path, monkeypatch)
    marker = tmp_path / "executed"
    torch.save((Payload(marker), {}, None), root / name)
    with pytest.raises(UnsafeFileError, match=rf"{name}: refusing to load this dataset file"):
        qm9_from_pyg_root(root)
    assert not marker.exists()
    assert (root / name).exists()  # the user's root is never deleted from


def test_a_payload_as_raw_qm9_v3_is_refused(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "rdkit", None)
    raw = tmp_path / "qm9" / "raw"
    raw.mkdir(parents=True)
    marker = tmp_path / "executed"
    torch.save([Payload(marker)], raw / "qm9_v3.pt")
    with pytest.raises(UnsafeFileError, match="qm9_v3.pt: refusing"):
        qm9_from_pyg_root(tmp_path / "qm9")
    assert not marker.exists()


def test_ceq_run_on_a_poisoned_pyg_root_is_one_line_and_runs_nothing(tmp_path, monkeypatch, capsys):
    root = _pyg_root(tmp_path, monkeypatch)
    marker = tmp_path / "executed"
    torch.save((Payload(marker), {}, None), root / "processed" / "data_v3.pt")
    problem = tmp_path / "q.yaml"
    problem.write_text(f"task: {{name: qm9, options: {{source: pyg_root, root: '{root}'}}}}\n"
                       "model: {name: schnet, options: {hidden_channels: 8, num_interactions: 1}}\n")
    capsys.readouterr()
    assert main(["run", str(problem), "--out", str(tmp_path / "runs"), "--quiet", "--epochs", "1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"ceq: error: {problem}:1: {root / 'processed' / 'data_v3.pt'}: refusing"), err
    assert err.count("\n") == 1 and not marker.exists()
    assert not (tmp_path / "runs").exists()  # nothing written for a build that failed


def test_a_payload_in_the_qm9pack_cache_is_rebuilt_not_run(tmp_path):
    src = _qm9.write_qm9pack_dir(tmp_path / "src", _qm9.MOLS)
    assert len(QM9Pack(tmp_path / "cache", source_dir=src)) == 3
    marker = tmp_path / "executed"
    torch.save((Payload(marker), {}, None), tmp_path / "cache" / "processed" / "qm9pack_all.pt")
    with pytest.warns(RuntimeWarning, match="rebuilding the QM9Pack cache"):
        ds = QM9Pack(tmp_path / "cache", source_dir=src)
    assert len(ds) == 3 and not marker.exists()
    assert torch.allclose(ds[2].y[0].double(), _qm9.expected_y(_qm9.MOLS[2]), rtol=1e-6, atol=1e-4)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert len(QM9Pack(tmp_path / "cache", source_dir=src)) == 3  # the rebuilt cache is plain data


def test_the_torch_load_guard_is_restored_after_an_error(tmp_path):
    before = torch.load
    marker = tmp_path / "executed"
    torch.save(Payload(marker), tmp_path / "x.pt")
    with pytest.raises(UnsafeFileError), no_code_from_files():
        torch.load(tmp_path / "x.pt", weights_only=False)  # the guard overrides the caller's weights_only
    assert torch.load is before and not marker.exists()


@pytest.mark.parametrize("damage", ["pickle", "truncated", "missing_array"])
def test_a_bad_nbody_cache_is_simulated_again_never_unpickled(tmp_path, damage):
    params = {"n_train": 3, "n_val": 2, "n_test": 2, "seed": 1, "frame_in": 0, "frame_out": 1}
    good = load_nbody(tmp_path, **params)
    (path,) = tmp_path.glob("nbody_*.npz")
    marker = tmp_path / "executed"
    if damage == "pickle":
        np.savez(path, train_loc=np.array([Payload(marker)], dtype=object))
        path.rename(path)  # np.savez keeps the name (it ends in .npz)
    elif damage == "truncated":
        path.write_bytes(path.read_bytes()[:100])
    else:
        np.savez(path, **{k: v for k, v in good.items() if k != "test_target"})
    with pytest.warns(RuntimeWarning, match="simulating again"):
        again = load_nbody(tmp_path, **params)
    assert not marker.exists()
    assert set(again) == set(good) and all(np.array_equal(again[k], good[k]) for k in good)
