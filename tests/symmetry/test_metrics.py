import pytest
import torch
from torch import nn

from constrained_eq.homotopy import relax
from constrained_eq.models import VNLinear
from constrained_eq.symmetry import SO, VectorRep, assert_equivariant, equivariance_error, projection_error


def test_equivariance_error_is_zero_for_equivariant_and_positive_for_relaxed():
    model = nn.Sequential(VNLinear(3, 4), VNLinear(4, 2)).double()
    x = torch.randn(10, 3, 3, dtype=torch.float64)
    reps = {"act_in": VectorRep(3), "act_out": VectorRep(2)}
    assert equivariance_error(model, x, SO(3), **reps) < 1e-12
    relaxed = relax(model, gamma_init=0.3).double()
    err = equivariance_error(relaxed, x, SO(3), n=8, **reps)
    assert err > 1e-2
    assert equivariance_error(relaxed, x, SO(3), reduction="none", **reps).shape == (5, 10)


def test_equivariance_error_runs_one_batched_forward():
    calls = []
    model = VNLinear(2, 2).double()
    model.register_forward_hook(lambda m, a, o: calls.append(a[0].shape[0]))
    equivariance_error(model, torch.randn(3, 2, 3, dtype=torch.float64), SO(3), n=5, act_in=VectorRep(2))
    assert calls == [3, 15]


def test_invariant_output():
    x = torch.randn(4, 2, 3, dtype=torch.float64)
    assert equivariance_error(lambda z: z.norm(dim=(-1, -2)), x, SO(3), act_in=VectorRep(2), act_out="trivial") < 1e-12


def test_projection_error_scales_with_gamma():
    model = relax(nn.Sequential(VNLinear(3, 3)), gamma_init=0.0).double()
    x = torch.randn(6, 3, 3, dtype=torch.float64)
    assert projection_error(model, x) == 0
    with torch.no_grad():
        model[0].gamma.fill_(0.5)
    expected = 0.5 * (x.flatten(-2) @ model[0].neq.branch.weight.T).norm(dim=1).mean()
    assert torch.allclose(projection_error(model, x), expected)


def test_assert_equivariant_raises_and_errors():
    model = relax(VNLinear(2, 2), gamma_init=1.0).double()
    x = torch.randn(3, 2, 3, dtype=torch.float64)
    with pytest.raises(AssertionError, match=r"HomotopicLayer is not SO\(3\)-equivariant: max error"):
        assert_equivariant(model, SO(3), x, act_in=VectorRep(2))
    with pytest.raises(TypeError, match=r"Expected 'act_in' to be a Rep .* \(got int\)"):
        equivariance_error(model, x, SO(3), act_in=3)
    with pytest.raises(ValueError, match=r"Expected 'n' to be an integer ≥ 1 \(got 0\)"):
        equivariance_error(model, x, SO(3), n=0, act_in=VectorRep(2))
