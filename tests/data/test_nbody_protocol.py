"""The N-body protocol pinned end to end: a sample is the simulator state at step 3,100 (frame 30) and its
target the positions at step 4,100 (frame 40), of trajectories started from the generator's initial
conditions (EGNN's ``nbody_small``: ``RandomState(43)``, pools of 10,000 / 2,000 / 2,000 trajectories).

The reference below draws the initial conditions and integrates them on its own (no code of
``constrained_eq.data.nbody``), so a shift of the frames, of the step count or of the random stream
fails here even when the input and target frames stay a consistent pair.
"""

import numpy as np
import pytest
import torch

from constrained_eq.data.nbody import NBodyDataset, integrate_charged, load_nbody

N_BALLS, DT, MAX_F = 5, 1e-3, 100.0
POOLS = (("train", 10_000), ("val", 2_000), ("test", 2_000))


def _reference_initial_conditions(counts: dict[str, int], seed: int = 43) -> dict[str, list[tuple]]:
    """The generator's stream: per trajectory charges, positions, velocities, then two (49, 3, 5) noise draws."""
    rng = np.random.RandomState(seed)
    out = {}
    for index, (split, pool) in enumerate(POOLS):
        if not any(counts[name] for name, _ in POOLS[index:]):
            break
        out[split] = []
        for i in range(pool):
            charges = rng.choice([-1.0, 0.0, 1.0], size=(N_BALLS, 1), p=[0.5, 0.0, 0.5])[:, 0]
            loc = rng.randn(3, N_BALLS).T * (N_BALLS / 5) ** (1 / 3)
            vel = rng.randn(3, N_BALLS)
            vel = (vel * 0.5 / np.linalg.norm(vel, axis=0, keepdims=True)).T
            rng.randn(49, 3, N_BALLS)
            rng.randn(49, 3, N_BALLS)
            if i < counts[split]:
                out[split].append((charges, loc, vel))
    return out


def _force(x: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Σ_{j≠i} q_i q_j (x_i − x_j)/‖x_i − x_j‖³, clipped per axis to ±100."""
    d = x[:, None, :] - x[None, :, :]
    r2 = (d**2).sum(-1) + np.eye(N_BALLS)  # the diagonal is masked below
    coupling = q[:, None] * q[None, :] * (1 - np.eye(N_BALLS)) / r2**1.5
    return np.clip((coupling[..., None] * d).sum(1), -MAX_F, MAX_F)


def _reference_states(q, x, v, steps):
    """Kick by dt·F(x₀), then per step s: x += dt·v; record (x, v) at s; v += dt·F(x)."""
    x, v = x.copy(), v.copy()
    v = v + DT * _force(x, q)
    states = {}
    for s in range(1, max(steps) + 1):
        x = x + DT * v
        if s in steps:
            states[s] = (x.copy(), v.copy())
        v = v + DT * _force(x, q)
    return states


@pytest.fixture(scope="module")
def reference():
    counts = {"train": 2, "val": 1, "test": 1}
    out = {}
    for split, trajectories in _reference_initial_conditions(counts).items():
        out[split] = [(q, _reference_states(q, x, v, {3100, 4100})) for q, x, v in trajectories]
    return out


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("nbody")


def test_samples_are_step_3100_and_targets_step_4100_of_the_generator_trajectories(cache, reference):
    arrays = load_nbody(cache, n_train=2, n_val=1, n_test=1, seed=43, clip="axis", field=None,
                        frame_in=30, frame_out=40)
    for split, trajectories in reference.items():
        for k, (charges, states) in enumerate(trajectories):
            np.testing.assert_array_equal(arrays[f"{split}_charges"][k], charges)
            np.testing.assert_allclose(arrays[f"{split}_loc"][k], states[3100][0], rtol=0, atol=1e-9)
            np.testing.assert_allclose(arrays[f"{split}_vel"][k], states[3100][1], rtol=0, atol=1e-9)
            np.testing.assert_allclose(arrays[f"{split}_target"][k], states[4100][0], rtol=0, atol=1e-9)


def test_the_dataset_defaults_follow_the_protocol(cache, reference):
    """``NBodyDataset`` with its default frames serves the same states (float32)."""
    for split, trajectories in reference.items():
        ds = NBodyDataset(split, cache, n_train=2, n_val=1, n_test=1)
        for k, (charges, states) in enumerate(trajectories):
            loc, vel, q, target = ds[k]
            torch.testing.assert_close(loc, torch.tensor(states[3100][0], dtype=torch.float32))
            torch.testing.assert_close(vel, torch.tensor(states[3100][1], dtype=torch.float32))
            torch.testing.assert_close(q[:, 0], torch.tensor(charges, dtype=torch.float32))
            torch.testing.assert_close(target, torch.tensor(states[4100][0], dtype=torch.float32))


def test_one_frame_later_is_far_from_the_protocol(reference):
    """The test above can tell frames apart: 100 steps move a particle by much more than its tolerance."""
    q, x, v = _reference_initial_conditions({"train": 1, "val": 0, "test": 0})["train"][0]
    later = _reference_states(q, x, v, {3200})[3200][0]
    assert np.abs(later - reference["train"][0][1][3100][0]).max() > 1e-2


def test_the_default_force_clip_is_a_tenth_over_dt_per_axis():
    """Like charges 0.05 apart along x feel 1/0.05² = 400 > 0.1/dt: the kick is clipped to dt·100 on that axis."""
    loc = np.array([[[0.0, 0.0, 0.0], [0.05, 0.0, 0.0]]])
    x, v = integrate_charged(loc, np.zeros_like(loc), np.array([[1.0, 1.0]]), [1], dt=DT)
    np.testing.assert_allclose(v[0, 0, 0], [-DT * MAX_F, 0.0, 0.0], rtol=1e-12)
    np.testing.assert_allclose(x[0, 0, 1], [0.05 + DT * DT * MAX_F, 0.0, 0.0], rtol=1e-12)
    # with a clip of 1000 the same pair is kicked by the full Coulomb force
    _, v = integrate_charged(loc, np.zeros_like(loc), np.array([[1.0, 1.0]]), [1], dt=DT, max_force=1e3)
    np.testing.assert_allclose(v[0, 0, 0], [-DT * 400.0, 0.0, 0.0], rtol=1e-12)
