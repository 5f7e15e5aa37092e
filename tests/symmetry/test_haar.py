r"""Every rotation sampler draws from the Haar measure, and every task's augmentation really rotates.

Haar on SO(3): the rotation angle θ has density (1 − cos θ)/π on [0, π], i.e. the CDF
F(θ) = (θ − sin θ)/π; E[R] = 0 and E[R_ij R_kl] = δ_ik δ_jl / 3 (Rᵀe_j is uniform on the sphere).
Each statistic is compared with a fixed seed, so the tests are deterministic; an identity sampler
(θ = 0, E[R] = I) fails every one of them.
"""

import math

import pytest
import torch
from e3nn import o3
from torch_geometric.data import Batch, Data

from constrained_eq.data.modelnet import RandomRotation
from constrained_eq.data.nbody import NBodyDataset
from constrained_eq.symmetry import SO, C, E, O, random_rotation
from constrained_eq.tasks.mocap import Mocap
from constrained_eq.tasks.modelnet import ModelNet
from constrained_eq.tasks.nbody import NBody
from constrained_eq.tasks.qm9 import QM9
from constrained_eq.tasks.toy_rotation import ToyRotation

F64 = torch.float64
KS_CRITICAL = 1.95  # √n · sup|F_n − F| exceeds 1.95 with probability 0.001 under the null hypothesis


def _ks_statistic(samples: torch.Tensor, cdf) -> float:
    """√n · sup_θ |F_n(θ) − F(θ)| (Kolmogorov–Smirnov)."""
    x, _ = samples.double().sort()
    n = x.numel()
    f = cdf(x)
    upper = torch.arange(1, n + 1, dtype=F64) / n - f
    lower = f - torch.arange(0, n, dtype=F64) / n
    return float(torch.maximum(upper, lower).max()) * math.sqrt(n)


def _angles(r: torch.Tensor) -> torch.Tensor:
    trace = r.diagonal(dim1=-2, dim2=-1).sum(-1)
    return torch.arccos(((trace - 1) / 2).clamp(-1, 1))


def assert_haar_so3(r: torch.Tensor) -> None:
    """Rotations (det 1, orthogonal) whose angle, mean and second moments are those of the Haar measure."""
    r = r.double()
    n = r.shape[0]
    eye = torch.eye(3, dtype=F64)
    torch.testing.assert_close(r.transpose(-1, -2) @ r, eye.expand(n, 3, 3), rtol=0, atol=1e-5)
    torch.testing.assert_close(torch.linalg.det(r), torch.ones(n, dtype=F64), rtol=0, atol=1e-5)
    ks = _ks_statistic(_angles(r), lambda t: (t - torch.sin(t)) / math.pi)
    assert ks < KS_CRITICAL, f"rotation angles are not Haar: KS √n·D = {ks:.2f}"
    # Var R_ij = 1/3 and Var(R_ij R_kl) ≤ 1: five standard errors
    assert r.mean(0).abs().max() < 5 / math.sqrt(3 * n), r.mean(0)
    second = torch.einsum("nij,nkl->ijkl", r, r) / n
    expected = torch.einsum("ik,jl->ijkl", eye, eye) / 3
    assert (second - expected).abs().max() < 5 / math.sqrt(n), (second - expected).abs().max()


N = 3000


def test_the_statistics_reject_the_identity_and_a_fixed_axis():
    identity = torch.eye(3, dtype=F64).expand(N, 3, 3)
    with pytest.raises(AssertionError, match="not Haar"):
        assert_haar_so3(identity)
    # uniform angle about a fixed axis: a rotation of the right type with the wrong distribution
    t = torch.rand(N, generator=torch.Generator().manual_seed(0), dtype=F64) * math.pi
    c, s, z, o = t.cos(), t.sin(), torch.zeros(N, dtype=F64), torch.ones(N, dtype=F64)
    about_z = torch.stack([torch.stack([c, -s, z], -1), torch.stack([s, c, z], -1), torch.stack([z, z, o], -1)], -2)
    with pytest.raises(AssertionError):
        assert_haar_so3(about_z)


def test_random_rotation_batched_and_single():
    assert_haar_so3(random_rotation(torch.Generator().manual_seed(0), F64, batch=N))
    generator = torch.Generator().manual_seed(1)
    single = torch.stack([random_rotation(generator, F64) for _ in range(N)])
    assert single.shape == (N, 3, 3)
    assert_haar_so3(single)


def test_random_rotation_float32_and_global_rng():
    torch.manual_seed(2)
    r = random_rotation(dtype=torch.float32, batch=N)
    assert r.dtype == torch.float32
    assert_haar_so3(r)


def test_random_rotation_is_e3nn_rand_matrix_on_the_generators_stream():
    """With a generator: the draws of ``o3.rand_matrix`` after the same seed; the global RNG is untouched."""
    generator = torch.Generator().manual_seed(11)
    torch.manual_seed(12)
    state = torch.random.get_rng_state()
    first, second = random_rotation(generator, F64, batch=4), random_rotation(generator, F64)
    assert torch.equal(torch.random.get_rng_state(), state)
    torch.manual_seed(11)
    assert torch.equal(first, o3.rand_matrix(4, dtype=F64))
    assert torch.equal(second, o3.rand_matrix(dtype=F64))


@pytest.mark.parametrize("seeded", [True, False], ids=["generator", "global-rng"])
def test_group_haar_rotations(seeded):
    torch.manual_seed(3)
    generator = torch.Generator().manual_seed(3) if seeded else None
    assert_haar_so3(SO(3).sample(N, generator=generator, dtype=F64))


def test_o3_and_e3_samples_are_haar_rotations_times_a_fair_sign():
    generator = torch.Generator().manual_seed(4)
    q = O(3).sample(N, generator=generator, dtype=F64)
    det = torch.linalg.det(q)
    torch.testing.assert_close(det.abs(), torch.ones(N, dtype=F64))
    assert abs(float((det > 0).double().mean()) - 0.5) < 5 * 0.5 / math.sqrt(N)
    assert_haar_so3(q * det[:, None, None])  # det(−R) = −1 for R ∈ SO(3): the sign-corrected part is Haar
    e = E(3).sample(N, generator=generator, dtype=F64)
    linear = e[:, :3, :3]
    assert_haar_so3(linear * torch.linalg.det(linear)[:, None, None])
    assert torch.equal(e[:, 3], torch.tensor([0.0, 0.0, 0.0, 1.0], dtype=F64).expand(N, 4))
    shift = e[:, :3, 3]
    assert shift.mean(0).abs().max() < 5 / math.sqrt(N) and abs(float(shift.var()) - 1) < 0.1


def test_so2_angle_is_uniform_and_cn_draws_every_element_equally():
    g = SO(2).sample(N, generator=torch.Generator().manual_seed(5), dtype=F64)
    angle = torch.atan2(g[:, 1, 0], g[:, 0, 0]) % (2 * math.pi)
    assert _ks_statistic(angle, lambda t: t / (2 * math.pi)) < KS_CRITICAL
    torch.testing.assert_close(torch.linalg.det(g), torch.ones(N, dtype=F64))
    k = C(4).sample(N, generator=torch.Generator().manual_seed(6), dtype=F64)
    index = (torch.atan2(k[:, 1, 0], k[:, 0, 0]) % (2 * math.pi) / (math.pi / 2)).round().long() % 4
    counts = torch.bincount(index, minlength=4).double()
    assert ((counts - N / 4).abs() < 5 * math.sqrt(N * 0.25 * 0.75)).all(), counts


def test_task_random_rotation_and_modelnet_transform():
    generator = torch.Generator().manual_seed(7)
    assert_haar_so3(torch.stack([random_rotation(generator, F64) for _ in range(N)]))
    points = torch.randn(5, 3, generator=torch.Generator().manual_seed(0), dtype=F64)
    transform = RandomRotation(torch.Generator().manual_seed(8))
    assert_haar_so3(torch.stack([_recover(points, transform(points)) for _ in range(1000)]))


# --- augmentation -------------------------------------------------------------------------------


def _recover(before: torch.Tensor, after: torch.Tensor) -> torch.Tensor:
    """The R with after = before · Rᵀ (least squares over the rows), checked to fit exactly."""
    a, b = before.reshape(-1, 3).double(), after.reshape(-1, 3).double()
    rt = torch.linalg.lstsq(a, b).solution
    torch.testing.assert_close(a @ rt, b, rtol=0, atol=1e-4)
    return rt.T


def _points(n, seed):
    return torch.randn(n, 3, generator=torch.Generator().manual_seed(seed), dtype=F64)


def _toy():
    x, y = _points(8, 0).reshape(2, 4, 3), _points(8, 1).reshape(2, 4, 3)
    return ToyRotation(), (x, y), lambda b: [b[0], b[1]]


def _nbody():
    loc, vel, target = _points(5, 0), _points(5, 1), _points(5, 2)
    batch = NBodyDataset.collate([(loc, vel, torch.ones(5, 1, dtype=F64), target)])
    return NBody(), batch, lambda b: [b.loc, b.vel, b.target]


def _mocap():
    data = Data(pos=_points(4, 0), vel=_points(4, 1), y=_points(4, 2), edge_index=torch.tensor([[0, 1], [1, 0]]),
                edge_attr=torch.ones(2, 1))
    return Mocap(source="synthetic"), Batch.from_data_list([data]), lambda b: [b.pos, b.vel, b.y]


def _qm9():
    data = Data(z=torch.tensor([1, 6, 8, 1]), pos=_points(4, 0), y=torch.ones(1, 19))
    return QM9(source="synthetic"), Batch.from_data_list([data]), lambda b: [b.pos]


def _modelnet():
    return ModelNet(source="synthetic"), (_points(12, 0).reshape(2, 6, 3), torch.tensor([0, 1])), lambda b: [b[0]]


@pytest.mark.parametrize("make", [_toy, _nbody, _mocap, _qm9, _modelnet], ids=lambda f: f.__name__[1:])
def test_augmentation_rotates_inputs_and_targets_by_one_haar_rotation(make):
    """Every rotated field of the batch is turned by the same R, and R is Haar over repeated calls."""
    task, batch, fields = make()
    torch.manual_seed(9)
    rotations = []
    for _ in range(600):
        turned = task.augment(batch)
        before, after = fields(batch), fields(turned)
        r = _recover(before[0], after[0])
        for b, a in zip(before[1:], after[1:], strict=True):
            torch.testing.assert_close(a.double(), b.double() @ r.T, rtol=0, atol=1e-5)
        rotations.append(r)
    if isinstance(task, QM9 | ModelNet):  # invariant targets stay as they are
        other = turned.y if isinstance(task, QM9) else turned[1]
        assert torch.equal(other, batch.y if isinstance(task, QM9) else batch[1])
    assert_haar_so3(torch.stack(rotations))
