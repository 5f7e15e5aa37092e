import pytest
import torch

from constrained_eq.data.modelnet import RandomPointDrop, SyntheticShapes
from constrained_eq.homotopy import HomotopicLayer, LinearBranch, homotopic_layers, project
from constrained_eq.models._vn import VNBranch, graph_feature
from constrained_eq.models.vn_dgcnn import VNDGCNN
from constrained_eq.models.vn_pointnet import VNPointNet
from constrained_eq.symmetry import SO, VectorRep, assert_equivariant

MODELS = [VNPointNet, VNDGCNN]
count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731


def _assert_so3_invariant(model, points, atol=None):
    return assert_equivariant(model, SO(3), points, act_in=VectorRep(1), act_out="trivial", atol=atol)


@pytest.mark.parametrize("cls", MODELS)
def test_invariant_at_gamma_zero_and_broken_at_gamma_one(cls, dtype):
    model = cls(4).to(dtype)
    points = torch.randn(2, 24, 3, dtype=dtype)
    with pytest.raises(AssertionError, match=r"not SO\(3\)-equivariant"):
        _assert_so3_invariant(model, points, atol=1e-3)
    for layer in homotopic_layers(model):
        with torch.no_grad():
            layer.gamma.zero_()
    _assert_so3_invariant(model, points)


@pytest.mark.parametrize("cls", MODELS)
def test_vanilla_model_is_invariant(cls, dtype):
    model = cls(4, relaxed=False).to(dtype)
    assert not list(homotopic_layers(model))
    _assert_so3_invariant(model, torch.randn(2, 24, 3, dtype=dtype))


@pytest.mark.parametrize("cls", MODELS)
def test_project_gives_vanilla_architecture_and_gamma_zero_outputs(cls):
    vanilla, relaxed = cls(4, relaxed=False), cls(4)
    assert count(relaxed) > count(vanilla)
    projected = project(relaxed)
    assert list(projected.state_dict()) == list(vanilla.state_dict())
    assert count(projected) == count(vanilla)
    points = torch.randn(2, 16, 3)
    for layer in homotopic_layers(relaxed):
        with torch.no_grad():
            layer.gamma.zero_()
    torch.testing.assert_close(projected(points), relaxed(points))


@pytest.mark.parametrize("cls", MODELS)
def test_every_vn_map_is_relaxed_with_vector_reps(cls):
    model = cls(4)
    layers = list(homotopic_layers(model))
    assert len(layers) >= 8
    for layer in layers:
        assert isinstance(layer.neq, VNBranch) and isinstance(layer.neq.net, LinearBranch)
        c_in = layer.eq.in_channels
        torch.testing.assert_close(layer.neq.net.algebra_in, VectorRep(c_in).lie_algebra().to(torch.float32))


@pytest.mark.parametrize("cls", MODELS)
def test_runs_on_synthetic_shapes_with_random_point_drop(cls):
    data = SyntheticShapes(num_per_class=1, num_points=32, transform=RandomPointDrop(0.85))
    points = torch.stack([data[i][0] for i in range(len(data))])
    model = cls(4)
    logits = model(points)
    assert logits.shape == (4, 4) and torch.isfinite(logits).all()
    assert model(points[0]).shape == (4,)
    logits.sum().backward()


def test_vn_branch_is_equivariant_iff_lie_derivative_vanishes():
    branch = VNBranch(2, 3)
    with torch.no_grad():  # W = A ⊗ I_3 is exactly a VN map
        branch.net.linear.weight.copy_(torch.kron(torch.randn(3, 2), torch.eye(3)))
    a_in, a_out = branch.net.algebra_in, branch.net.algebra_out
    assert (branch.net.weight @ a_in - a_out @ branch.net.weight).abs().max() < 1e-6
    assert_equivariant(branch, SO(3), torch.randn(5, 2, 3), act_in=VectorRep(2), act_out=VectorRep(3))


def test_graph_feature_shapes_and_bad_input():
    assert graph_feature(torch.randn(2, 10, 4, 3), k=3, cross=False).shape == (2, 10, 3, 8, 3)
    assert graph_feature(torch.randn(2, 10, 1, 3), k=3, cross=True).shape == (2, 10, 3, 3, 3)
    with pytest.raises(
        ValueError, match=r"Expected 'points' to have shape \(B, N, 3\) or \(N, 3\) \(got \(2, 5, 2\)\)"
    ):
        VNPointNet(2)(torch.randn(2, 5, 2))
    with pytest.raises(ValueError, match=r"Expected 'k' to be a positive int \(got 0\)"):
        VNDGCNN(2, k=0)
    assert isinstance(VNDGCNN(2).embed.map_to_feat, HomotopicLayer)
