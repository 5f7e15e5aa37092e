"""Caches and checkpoints that know where they come from (issue 29).

The N-body cache is checked against the arrays its parameters ask for (rows per split, particles, a float
dtype of at least 32 bits, finite values) and simulated again with a warning naming the file and the key;
a checkpoint records its problem's SHA-256 and ``--resume`` refuses another problem's checkpoint.
"""

from __future__ import annotations

import json
import shutil
import warnings

import numpy as np
import pytest
from _toy import TOY_ACE_EQUALITY

from constrained_eq.data.nbody import load_nbody, nbody_cache_path
from constrained_eq.run.cli import main

PARAMS = {"n_train": 3, "n_val": 2, "n_test": 2, "seed": 1, "frame_in": 0, "frame_out": 1}


@pytest.mark.parametrize("damage, needle", [
    ("rows", "key 'train_loc': shape (2, 5, 3), expected (3, 5, 3)"),
    ("particles", "key 'val_charges': shape (2, 4), expected (2, 5)"),
    ("float16", "key 'test_vel': dtype float16, expected float32 or float64"),
    ("nan", "key 'train_target': 1 non-finite values"),
])
def test_an_nbody_cache_that_is_not_the_asked_one_is_simulated_again(tmp_path, damage, needle):
    good = load_nbody(tmp_path, **PARAMS)
    path = nbody_cache_path(tmp_path, **PARAMS)
    arrays = dict(good)
    if damage == "rows":
        arrays["train_loc"] = arrays["train_loc"][:2]
    elif damage == "particles":
        arrays["val_charges"] = arrays["val_charges"][:, :4]
    elif damage == "float16":
        arrays["test_vel"] = arrays["test_vel"].astype(np.float16)
    else:
        arrays["train_target"] = arrays["train_target"].copy()
        arrays["train_target"][0, 0, 0] = np.nan
    np.savez(path, **arrays)
    with pytest.warns(RuntimeWarning) as caught:
        again = load_nbody(tmp_path, **PARAMS)
    messages = [str(w.message) for w in caught]
    assert f"{path}: not the N-body cache these parameters ask for ({needle}); simulating again" in messages
    assert all(np.array_equal(again[k], good[k]) for k in good)


def test_a_float32_cache_of_the_asked_shape_is_used_as_it_is(tmp_path):
    good = load_nbody(tmp_path, **PARAMS)
    path = nbody_cache_path(tmp_path, **PARAMS)
    np.savez(path, **{k: v.astype(np.float32) for k, v in good.items()})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        again = load_nbody(tmp_path, **PARAMS)
    assert all(v.dtype == np.float32 for v in again.values())


def _run(path, out, *extra):
    return main(["run", str(path), "--out", str(out), "--quiet", *extra])


def test_resume_refuses_another_problems_checkpoint_naming_both(tmp_path, capsys):
    one, two = tmp_path / "one", tmp_path / "two"
    one.mkdir()
    two.mkdir()
    (one / "small.yaml").write_text(TOY_ACE_EQUALITY)
    (two / "small.yaml").write_text(TOY_ACE_EQUALITY.replace("lr: 0.01", "lr: 0.02"))
    assert _run(one / "small.yaml", one / "runs") == 0
    assert _run(two / "small.yaml", two / "runs") == 0
    run_one, run_two = one / "runs" / "small", two / "runs" / "small"
    sha_one = json.loads((run_one / "problem.json").read_text())["sha256"]
    sha_two = json.loads((run_two / "problem.json").read_text())["sha256"]
    for name in ("checkpoint.pt", "checkpoint.prev.pt", "checkpoints.json"):
        if (run_two / name).exists():
            shutil.copy(run_two / name, run_one / name)
    capsys.readouterr()
    assert _run(one / "small.yaml", one / "runs", "--resume") == 2
    err = capsys.readouterr().err
    (line,) = [x for x in err.splitlines() if x.startswith("ceq: error:")]
    assert (f"key 'problem_sha256': the checkpoint belongs to another problem (sha256 {sha_two}), not to this run "
            f"folder's problem (sha256 {sha_one} in {run_one / 'problem.json'})") in line, line
    assert "Traceback" not in err


def test_resume_with_allowed_changes_accepts_the_checkpoint_of_the_problem_before(tmp_path):
    path, out = tmp_path / "small.yaml", tmp_path / "runs"
    path.write_text(TOY_ACE_EQUALITY)
    assert _run(path, out) == 0
    path.write_text(TOY_ACE_EQUALITY.replace("epochs: 2", "epochs: 3"))
    assert _run(path, out, "--resume", "--allow-change", "training.epochs") == 0
    path.write_text(TOY_ACE_EQUALITY.replace("epochs: 2", "epochs: 4"))
    assert _run(path, out, "--resume", "--allow-change", "training.epochs") == 0
