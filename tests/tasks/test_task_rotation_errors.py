"""Each task's rotation error (``Task.equivariance_error`` through ``Task.rotation_error``) pinned by hand.

Models with a closed-form output: f(x) = x + c (equivariant part x, constant part c) has
f(Rx) − R f(x) = c − Rc, so with R the rotation by 90° about z and c = e₁, every point contributes
‖c − Rc‖ = √2; invariant tasks use sums of coordinates, whose change under R is written out below.
"""

import math

import pytest
import torch
from torch import nn
from torch_geometric.data import Batch, Data

from constrained_eq.data.nbody import NBodyDataset
from constrained_eq.symmetry import random_rotation
from constrained_eq.tasks import base
from constrained_eq.tasks.mocap import Mocap
from constrained_eq.tasks.modelnet import ModelNet
from constrained_eq.tasks.nbody import NBody
from constrained_eq.tasks.qm9 import QM9
from constrained_eq.tasks.toy_rotation import ToyRotation

F64 = torch.float64
RZ90 = torch.tensor([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]], dtype=F64)
C = torch.tensor([1.0, 0.0, 0.0], dtype=F64)  # ‖c − R_z(90°) c‖ = ‖(1, −1, 0)‖ = √2
E_Z = torch.tensor([0.0, 0.0, 1.0], dtype=F64)  # R_z(90°) e_z = e_z


@pytest.fixture
def quarter_turn(monkeypatch):
    """Every rotation drawn by ``Task.rotation_error`` is R_z(90°)."""
    monkeypatch.setattr(base, "random_rotation", lambda generator=None, dtype=F64, device=None: RZ90.to(dtype))


class Shift(nn.Module):
    """f(x) = x + c on the argument at ``index``; with ``repeat = T``, T steps x + e_z, ..., x + e_z, x + c.

    (The parameter is there only so that the task finds the device.)
    """

    def __init__(self, index: int = 0, repeat: int | None = None) -> None:
        super().__init__()
        self.anchor = nn.Parameter(torch.zeros((), dtype=F64))
        self.index, self.repeat = index, repeat

    def forward(self, *args):
        x = args[self.index]
        if self.repeat is None:
            return x + C
        return torch.stack([x + E_Z] * (self.repeat - 1) + [x + C])


def test_toy_rotation_error_by_hand(quarter_turn):
    x = torch.tensor([[[0.0, 3.0, 0.0], [0.0, 0.0, 0.0]]], dtype=F64)  # ‖x + c‖ = √10 and 1
    # Σ‖f(Rx) − R f(x)‖ / Σ‖f(x)‖ = 2√2 / (√10 + 1)
    error = ToyRotation().equivariance_error(Shift(), [(x, x)])
    assert error == pytest.approx(2 * math.sqrt(2) / (math.sqrt(10) + 1), rel=1e-12)


def test_toy_rotation_error_uses_one_seeded_haar_rotation_per_batch():
    """Two batches: the rotations are the first two draws of ``random_rotation`` from a generator seeded 0."""
    x1 = torch.zeros(1, 2, 3, dtype=F64)  # 2 points with ‖f(x)‖ = 1
    x2 = torch.zeros(1, 3, 3, dtype=F64)  # 3 points
    generator = torch.Generator().manual_seed(0)
    r1, r2 = random_rotation(generator, F64), random_rotation(generator, F64)
    expected = (2 * (C - r1 @ C).norm() + 3 * (C - r2 @ C).norm()) / 5
    error = ToyRotation().equivariance_error(Shift(), [(x1, x1), (x2, x2)])
    assert error == pytest.approx(float(expected), rel=1e-12)
    assert error > 0.1  # a real rotation: the identity would give 0


def _nbody_batch():
    loc = torch.tensor([[[0.0, 0.0, 2.0], [1.0, 1.0, 0.0]]], dtype=F64)
    vel = torch.tensor([[[0.1, 0.0, 0.0], [0.0, 0.2, 0.0]]], dtype=F64)
    charges = torch.ones(1, 2, 1, dtype=F64)
    return NBodyDataset.collate([(loc[0], vel[0], charges[0], loc[0])])


@pytest.mark.parametrize("inputs", ["egnn", "segnn"])
def test_nbody_rotation_error_by_hand(quarter_turn, inputs):
    # EGNN predicts positions (loc + c); SEGNN predicts the displacement c, which the task adds to loc.
    model = Shift(index=1)
    if inputs == "segnn":
        model.forward = lambda *args: torch.zeros_like(args[0][:, :3]) + C  # noqa: E731
    model.inputs = inputs
    # Σ‖f(Rx) − R f(x)‖ / Σ‖f(x) − x‖ = 2√2 / 2
    assert NBody().equivariance_error(model, [_nbody_batch()]) == pytest.approx(math.sqrt(2), rel=1e-12)


def test_mocap_rotation_error_reads_the_last_step(quarter_turn):
    pos = torch.tensor([[0.0, 1.0, 0.0], [2.0, 0.0, 1.0], [0.0, 0.0, 0.0]], dtype=F64)
    data = Data(pos=pos, vel=0.1 * pos, y=pos, edge_index=torch.tensor([[0, 1], [1, 0]]),
                edge_attr=torch.ones(2, 1, dtype=F64))
    model = Shift(index=1, repeat=4)  # T = 4 predicted steps: x + e_z (equivariant under R_z), ..., x + c
    # only the last step counts: Σ‖f(Rx)_T − R f(x)_T‖ / Σ‖f(x)_T − x‖ = 3√2 / 3 (the first steps would give 0)
    assert Mocap(source="synthetic").equivariance_error(model, [Batch.from_data_list([data])]) == pytest.approx(
        math.sqrt(2), rel=1e-12)


class SumX(nn.Module):
    """Graph-level f = Σ_atoms x-coordinate (not invariant: under R_z(90°), x ↦ −y)."""

    def __init__(self) -> None:
        super().__init__()
        self.anchor = nn.Parameter(torch.zeros((), dtype=F64))

    def forward(self, z, pos, batch):
        return torch.zeros(int(batch.max()) + 1, dtype=F64).index_add(0, batch, pos[:, 0])


def test_qm9_invariance_error_by_hand(quarter_turn):
    # molecule 1: atoms (1, 0, 0), (0, 2, 0): f(x) = 1, f(Rx) = 0 − 2 = −2; molecule 2: (0, 0, 5): 0 and 0
    first = Data(z=torch.tensor([1, 6]), pos=torch.tensor([[1.0, 0.0, 0.0], [0.0, 2.0, 0.0]], dtype=F64))
    second = Data(z=torch.tensor([8]), pos=torch.tensor([[0.0, 0.0, 5.0]], dtype=F64))
    # Σ|f(Rx) − f(x)| / Σ|f(x)| = 3 / 1
    error = QM9(source="synthetic").equivariance_error(SumX(), [Batch.from_data_list([first, second])])
    assert error == pytest.approx(3.0, rel=1e-12)


class SumPoints(nn.Module):
    """Logits f = Σ_points p (three "classes")."""

    def __init__(self) -> None:
        super().__init__()
        self.anchor = nn.Parameter(torch.zeros((), dtype=F64))

    def forward(self, points):
        return points.sum(dim=1)


def test_modelnet_invariance_error_by_hand(quarter_turn):
    # points (1, 0, 0), (0, 0, 3): f(x) = (1, 0, 3), f(Rx) = (0, 1, 3): Σ|Δ| = 2, Σ|f(x)| = 4
    points = torch.tensor([[[1.0, 0.0, 0.0], [0.0, 0.0, 3.0]]], dtype=F64)
    error = ModelNet(source="synthetic").equivariance_error(SumPoints(), [(points, torch.tensor([0]))])
    assert error == pytest.approx(0.5, rel=1e-12)


@pytest.mark.parametrize("name", ["egnn", "segnn"])
def test_nbody_stacked_forward_gives_the_two_forwards_error(name):
    """x and Rx in one stacked forward (``join_batches``) give the error of two separate forwards."""
    import constrained_eq as ceq
    from constrained_eq.data.nbody import join_batches

    torch.manual_seed(0)
    task = NBody()
    model = task.model(name, hidden_nf=8, n_layers=2).double()  # both are built relaxed
    for parameter in ceq.gammas(model):  # γ ≠ 0: a clearly non-equivariant model
        parameter.data.fill_(0.7)
    batches = []
    for seed in range(2):
        g = torch.Generator().manual_seed(seed)
        samples = [tuple(torch.randn(5, k, generator=g, dtype=F64) for k in (3, 3, 1, 3)) for _ in range(3)]
        batches.append(NBodyDataset.collate(samples))
    turn = lambda batch, rot: batch._replace(loc=batch.loc @ rot.T, vel=batch.vel @ rot.T)  # noqa: E731
    sums = lambda out, turned, rot, batch: ((turned - out @ rot.T).norm(dim=-1).sum(),  # noqa: E731
                                            (out - batch.loc).norm(dim=-1).sum())
    separate = task.rotation_error(model, batches, turn, sums)
    assert separate > 1e-3
    assert task.equivariance_error(model, batches) == pytest.approx(separate, rel=1e-12)
    both = join_batches(batches[0], batches[1])
    assert both.num_graphs == 6 and both.batch.tolist() == [g for g in range(6) for _ in range(5)]
    assert torch.equal(both.edge_index[:, both.edge_index.shape[1] // 2:] - 15, batches[1].edge_index)
