"""Non-equivariance targets: each constraint holds after constrained training and fails without it."""

import pytest
import torch

import constrained_eq as ceq
from constrained_eq.core.engine import Solver
from constrained_eq.core.targets import (
    false_positive_rate,
    fpr_surrogate,
    l1_norms,
    spectral_norm_estimate,
    spectral_norms,
    weight_layers,
)
from constrained_eq.models.vn_linear import VNLinear


def _train(model, batch, loss, constraint, formulation, steps=150, lr=0.05, dual_lr=1.0, optimizer=torch.optim.Adam):
    problem = ceq.ConstrainedProblem(loss, [constraint])
    solver = Solver(problem, model, formulation, lambda p: optimizer(p, lr=lr), dual_lr=dual_lr, example_batch=batch)
    for _ in range(steps):
        solver.step(batch)
    return constraint.target(model, batch, model(batch[0]))


def _mse(out, batch):
    return (out - batch[1]).pow(2).mean()


def _logistic(out, batch):
    signs = 2 * batch[1] - 1
    return torch.nn.functional.softplus(-signs * out.reshape(-1)).mean()


@pytest.mark.parametrize("formulation", ["none", "lagrangian"])
def test_spectral_norm_bound_is_a_lipschitz_constraint(formulation):
    x = torch.randn(32, 4)
    q, _ = torch.linalg.qr(torch.randn(4, 4))
    target = x @ torch.diag(torch.tensor([3.0, 0.5, 0.3, 0.2])) @ q  # a map with ‖W‖₂ = 3
    model = torch.nn.Linear(4, 4, bias=False)
    constraint = ceq.Inequality(spectral_norms, bound=1.0)
    _train(model, (x, target), _mse, constraint, formulation, steps=300, lr=0.2, dual_lr=0.5, optimizer=torch.optim.SGD)
    sigma = torch.linalg.matrix_norm(model.weight.detach(), 2).item()
    assert (sigma <= 1.05) if formulation == "lagrangian" else (sigma > 2.5)


@pytest.mark.parametrize("formulation", ["none", "lagrangian"])
def test_l1_budget(formulation):
    x = torch.randn(32, 8)
    model = torch.nn.Linear(8, 1)
    _train(model, (x, x @ (1.5 * torch.randn(8, 1).sign())), _mse, ceq.Inequality(l1_norms, bound=0.2), formulation)
    value = model.weight.abs().mean().item()
    assert (value <= 0.21) if formulation == "lagrangian" else (value > 0.5)


@pytest.mark.parametrize("formulation", ["none", "lagrangian"])
def test_false_positive_rate_bound(formulation):
    y = (torch.rand(128) < 0.5).float()
    x = torch.randn(128, 2) + y[:, None]
    model = torch.nn.Linear(2, 1)
    surrogate = _train(model, (x, y), _logistic, ceq.Inequality(false_positive_rate, bound=0.05), formulation).item()
    scores = model(x).detach().reshape(-1)
    hard = ((scores > 0) & (y == 0)).float().sum() / (y == 0).sum()
    if formulation == "lagrangian":
        assert surrogate <= 0.055 and hard <= 0.1
    else:
        assert surrogate > 0.15 and hard > 0.15


def test_spectral_estimate_is_differentiable_and_keeps_state_dict():
    layer = torch.nn.Linear(5, 3)
    keys = list(layer.state_dict())
    sigma = spectral_norm_estimate(layer)
    torch.testing.assert_close(sigma, torch.linalg.matrix_norm(layer.weight, 2), rtol=1e-4, atol=1e-5)
    sigma.backward()
    assert layer.weight.grad is not None and list(layer.state_dict()) == keys
    assert hasattr(layer, "_spectral_u") and layer._spectral_u.shape == (3,)


def test_targets_cover_every_weight_layer_and_are_registered():
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), VNLinear(4, 2))
    assert len(weight_layers(model)) == 2
    assert spectral_norms(model).shape == (2,) and l1_norms(model).shape == (2,)
    registered = ceq.core.constraints.registered_targets()
    assert {"spectral_norms", "l1_norms", "false_positive_rate"} <= set(registered)
    assert (
        repr(ceq.Inequality("false_positive_rate", bound=0.05)) == "Inequality(target=false_positive_rate, bound=0.05)"
    )
    with pytest.raises(ValueError, match=r"Expected the model to contain layers with a 2-D 'weight' parameter"):
        spectral_norms(torch.nn.ReLU())


def test_fpr_surrogate_values_and_errors():
    scores, labels = torch.tensor([0.0, 100.0, -100.0, 5.0]), torch.tensor([0, 0, 0, 1])
    torch.testing.assert_close(fpr_surrogate(scores, labels), torch.tensor([0.5]))
    with pytest.raises(ValueError, match=r"Expected 'labels' to have one entry per score \(4\) \(got 3\)"):
        fpr_surrogate(scores, labels[:3])
    with pytest.raises(ValueError, match=r"Expected 'batch' to be an \(inputs, labels\) pair"):
        false_positive_rate(torch.nn.Linear(2, 1), torch.zeros(2), scores)
