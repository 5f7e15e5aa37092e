import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from constrained_eq.data.nbody import (
    NBodyDataset,
    charged_forces,
    fully_connected_edges,
    integrate_charged,
    load_nbody,
    simulate_nbody,
)

TINY = dict(n_train=3, n_val=2, n_test=2, seed=5, frame_in=2, frame_out=4)


def _random_state(rng, b=6, n=5):
    loc = rng.standard_normal((b, n, 3))
    vel = rng.standard_normal((b, n, 3)) * 0.5
    charges = rng.choice([-1.0, 1.0], size=(b, n))
    return loc, vel, charges


def test_simulation_is_deterministic():
    a, b = simulate_nbody(**TINY), simulate_nbody(**TINY)
    assert a.keys() == b.keys()
    for key in a:
        np.testing.assert_array_equal(a[key], b[key])
    c = simulate_nbody(**{**TINY, "seed": 6})
    assert not np.array_equal(a["train_loc"], c["train_loc"])


def test_cache_hit_returns_identical_arrays(tmp_path):
    first = load_nbody(tmp_path, **TINY)
    files = list(tmp_path.glob("nbody_*.npz"))
    assert len(files) == 1 and not list(tmp_path.glob(".nbody_*"))
    second = load_nbody(tmp_path, **TINY)
    for key in first:
        np.testing.assert_array_equal(first[key], second[key])
    load_nbody(tmp_path, **{**TINY, "clip": "norm"})
    assert len(list(tmp_path.glob("nbody_*.npz"))) == 2


def test_splits_are_nested_prefixes_of_the_generator_stream():
    small = simulate_nbody(**TINY)
    large = simulate_nbody(**{**TINY, "n_train": 5, "n_test": 3})
    np.testing.assert_array_equal(small["train_loc"], large["train_loc"][:3])
    np.testing.assert_array_equal(small["test_target"], large["test_target"][:2])
    assert set(np.unique(large["train_charges"])) <= {-1.0, 1.0}


def test_coulomb_force_sign_and_one_step_by_hand():
    loc = np.array([[[0.0, 0.0, 0.0], [2.0, 0.0, 0.0]]])
    vel = np.array([[[0.0, 0.1, 0.0], [0.0, 0.0, 0.0]]])
    like, unlike = np.array([[1.0, 1.0]]), np.array([[1.0, -1.0]])
    # like charges repel: F_0 = q0 q1 (x0 - x1) / r^3 = (-1/4, 0, 0)
    np.testing.assert_allclose(charged_forces(loc, like)[0, 0], [-0.25, 0.0, 0.0])
    np.testing.assert_allclose(charged_forces(loc, unlike)[0, 0], [0.25, 0.0, 0.0])
    dt = 0.01
    x, v = integrate_charged(loc, vel, like, [1], dt=dt)
    v_hand = vel[0, 0] + dt * np.array([-0.25, 0.0, 0.0])
    np.testing.assert_allclose(v[0, 0, 0], v_hand, atol=1e-15)
    np.testing.assert_allclose(x[0, 0, 0], loc[0, 0] + dt * v_hand, atol=1e-15)


def test_energy_drift_is_small_without_clipping():
    loc = np.array([[[-1.0, 0.0, 0.0], [1.0, 0.0, 0.0]]])
    vel = np.array([[[0.0, -0.3, 0.1], [0.0, 0.3, -0.1]]])
    charges = np.array([[1.0, -1.0]])
    steps = list(range(100, 4001, 100))
    x, v = integrate_charged(loc, vel, charges, steps + [s + 1 for s in steps], dt=1e-3, clip="none")
    # saved velocities lag half a step: average v_{s-1/2} and v_{s+1/2} to get v_s
    v_mid = 0.5 * (v[: len(steps)] + v[len(steps) :])
    r = np.linalg.norm(x[: len(steps), 0, 0] - x[: len(steps), 0, 1], axis=-1)
    assert r.min() < 1.0  # a close approach happens
    energy = 0.5 * (v_mid[:, 0] ** 2).sum(axis=(-1, -2)) - 1.0 / r
    assert np.ptp(energy) < 1e-5 * np.abs(energy).mean()


def test_reintegrating_frame_in_reproduces_target():
    data = simulate_nbody(**TINY)
    x, _ = integrate_charged(data["train_loc"], data["train_vel"], data["train_charges"], [200])
    np.testing.assert_allclose(x[0], data["train_target"], atol=1e-11)


@pytest.mark.parametrize("clip,exact", [("norm", True), ("axis", False)])
def test_rotating_the_initial_state_rotates_the_trajectory(clip, exact):
    rng = np.random.default_rng(0)
    loc, vel, charges = _random_state(rng)
    rot = Rotation.random(random_state=1).as_matrix()
    steps = [100, 300, 600]
    kwargs = dict(dt=1e-3, clip=clip, max_force=0.5)  # a low clip so that it is active
    assert (np.abs(charged_forces(loc, charges, clip="none")) > 0.5).any()
    x, v = integrate_charged(loc, vel, charges, steps, **kwargs)
    xr, vr = integrate_charged(loc @ rot.T, vel @ rot.T, charges, steps, **kwargs)
    err = max(np.abs(x @ rot.T - xr).max(), np.abs(v @ rot.T - vr).max())
    if exact:
        assert err < 1e-10
    else:
        assert err > 1e-6


def test_field_accelerates_a_lone_charge_along_the_field():
    loc, vel = np.zeros((1, 1, 3)), np.zeros((1, 1, 3))
    steps, dt, field = 50, 1e-3, (0.0, 0.0, 2.0)
    for q in (1.0, -1.0):
        x, v = integrate_charged(loc, vel, np.array([[q]]), [steps], dt=dt, field=field)
        np.testing.assert_allclose(v[0, 0, 0], q * np.array(field) * dt * steps, atol=1e-15)
        np.testing.assert_allclose(x[0, 0, 0], q * np.array(field) * dt**2 * steps * (steps + 1) / 2, atol=1e-15)


def test_field_changes_dynamics_along_the_field():
    rng = np.random.default_rng(3)
    loc, vel, charges = _random_state(rng)
    x0, _ = integrate_charged(loc, vel, charges, [500])
    x1, _ = integrate_charged(loc, vel, charges, [500], field=(0.0, 0.0, 0.5))
    # each particle is pushed along q_i E: the charge-weighted z shift is positive, x/y are barely touched
    shift = (charges[None, ..., None] * (x1 - x0))[0]
    assert shift[..., 2].mean() > 0.05
    assert np.abs(shift[..., 2].mean()) > 10 * np.abs(shift[..., :2].mean(axis=(0, 1))).max()


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(clip="box"), r"Expected 'clip' to be one of 'axis', 'norm', 'none' \(got 'box'\)"),
        (
            dict(field=(1.0, 2.0)),
            r"Expected 'field' to be None or three finite numbers \(fx, fy, fz\) \(got \(1.0, 2.0\)\)",
        ),
    ],
)
def test_bad_options_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        simulate_nbody(**{**TINY, **kwargs})


def test_dataset_and_loader(tmp_path):
    with pytest.raises(ValueError, match=r"Expected 'split' to be one of 'train', 'val', 'test' \(got 'dev'\)"):
        NBodyDataset("dev", tmp_path, **{k: v for k, v in TINY.items()})
    ds = NBodyDataset("train", tmp_path, **TINY)
    assert len(ds) == 3 and ds.loc.dtype == torch.float32
    loc, vel, charges, target = ds[0]
    assert loc.shape == vel.shape == target.shape == (5, 3) and charges.shape == (5, 1)
    batch = next(iter(ds.loader(batch_size=2)))
    assert batch.loc.shape == (10, 3) and batch.edge_index.shape == (2, 40) and batch.num_graphs == 2
    assert torch.equal(batch.batch, torch.tensor([0] * 5 + [1] * 5))
    assert torch.equal(batch.batch[batch.edge_index[0]], batch.batch[batch.edge_index[1]])
    assert not (batch.edge_index[0] == batch.edge_index[1]).any()
    torch.testing.assert_close(batch.loc[5:], ds.loc[1])


def test_fully_connected_edges():
    edges = fully_connected_edges(2, 3)
    assert edges.shape == (2, 12)
    assert edges.T.tolist()[:6] == [[0, 1], [0, 2], [1, 0], [1, 2], [2, 0], [2, 1]]
