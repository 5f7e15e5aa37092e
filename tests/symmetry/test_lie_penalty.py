import math

import pytest
import torch
from torch import nn

from constrained_eq.core.constraints import Inequality, Penalty
from constrained_eq.homotopy import HomotopicLayer, LinearBranch, set_recording
from constrained_eq.symmetry import (
    SO,
    C,
    LieDerivative,
    VectorRep,
    branch_norms,
    lie_derivative_norms,
    lie_regularizer,
)


def _model(weight, rep=None):
    rep = VectorRep(1) if rep is None else rep
    branch = LinearBranch(3, 3, rep_in=rep, rep_out=rep).double()
    with torch.no_grad():
        branch.linear.weight.copy_(weight)
    return HomotopicLayer(nn.Identity(), branch)


def test_hand_computed_value():
    # W = e_z e_zᵀ: L_Jx(W) x = (0, x_z, x_y), L_Jy(W) x = (-x_z, 0, -x_x), L_Jz(W) = 0.
    model = _model(torch.diag(torch.tensor([0.0, 0.0, 1.0])))
    set_recording(model)
    model(torch.tensor([[1.0, 1.0, 1.0], [2.0, 0.0, 0.0]], dtype=torch.float64))
    assert torch.allclose(lie_derivative_norms(model), torch.tensor([math.sqrt(8.0)], dtype=torch.float64))
    assert torch.allclose(branch_norms(model), torch.tensor([1.0], dtype=torch.float64))
    assert torch.allclose(lie_regularizer(model), torch.tensor([math.sqrt(8.0) + 1.0], dtype=torch.float64))


def test_zero_for_intertwiner_and_positive_otherwise():
    x = torch.randn(5, 6, dtype=torch.float64)
    intertwiner = torch.kron(torch.randn(2, 2, dtype=torch.float64), torch.eye(3, dtype=torch.float64))
    branch = LinearBranch(6, 6, VectorRep(2), VectorRep(2)).double()
    with torch.no_grad():
        branch.linear.weight.copy_(intertwiner)
    set_recording(branch)
    branch(x)
    assert lie_derivative_norms(branch).abs().max() < 1e-12
    with torch.no_grad():
        branch.linear.weight.add_(torch.randn(6, 6, dtype=torch.float64))
    assert lie_derivative_norms(branch).min() > 1e-3


def test_gradient_reaches_only_the_branch_weight():
    model = _model(torch.randn(3, 3))
    set_recording(model)
    x = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    model(x)
    lie_regularizer(model).sum().backward()
    assert model.neq.linear.weight.grad is not None and x.grad is None


def test_factory_returns_penalty_or_inequality():
    assert LieDerivative() == Penalty(lie_regularizer, weight=0.01)
    assert LieDerivative(bound=0.2) == Inequality(lie_regularizer, bound=0.2)
    assert repr(LieDerivative(SO(3), weight=0.5)) == "Penalty(target=lie_regularizer_SO3, weight=0.5)"
    assert LieDerivative(SO(3)).target is LieDerivative(SO(3)).target


def test_first_call_turns_recording_on():
    model = _model(torch.eye(3))
    model(torch.randn(2, 3, dtype=torch.float64))
    with pytest.raises(ValueError, match="input recording was off and is now on: run the model forward again"):
        lie_regularizer(model)
    model(torch.randn(2, 3, dtype=torch.float64))
    assert lie_regularizer(model).shape == (1,)


def test_errors():
    with pytest.raises(ValueError, match=r"Expected one of 'weight' or 'bound' \(got weight=0.1 and bound=0.2\)"):
        LieDerivative(weight=0.1, bound=0.2)
    with pytest.raises(ValueError, match=r"Expected 'group' to be None or a continuous group such as SO\(3\) \(got C\(4\)\)"):
        LieDerivative(C(4))
    no_rep = HomotopicLayer(nn.Identity(), LinearBranch(3, 3))
    with pytest.raises(ValueError, match=r"expected LinearBranch 'neq' to have 'rep_in' and 'rep_out' \(got None\)"):
        lie_regularizer(no_rep)
    assert branch_norms.name == "branch_norms"
    with pytest.raises(ValueError, match="expected the model to contain LinearBranch modules"):
        lie_derivative_norms(nn.Linear(2, 2))
