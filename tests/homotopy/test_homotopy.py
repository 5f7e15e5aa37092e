import pytest
import torch
from e3nn import o3
from e3nn.util.test import assert_equivariant as e3nn_assert_equivariant
from torch import nn
from torch_geometric.nn import MessagePassing

from constrained_eq.homotopy import (
    HomotopicLayer,
    LinearBranch,
    branch_contributions,
    gammas,
    is_relaxed,
    project,
    recording,
    relax,
)
from constrained_eq.models import VNLinear
from constrained_eq.symmetry import (
    SO,
    DirectSumRep,
    PermutationRep,
    S,
    ScalarRep,
    VectorRep,
    assert_equivariant,
    equivariance_error,
)


def _set_gammas(model, value):
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, HomotopicLayer):
                m.gamma.fill_(value)


def _irreps_net():
    return nn.Sequential(o3.Linear("4x0e+2x1o", "3x0e+3x1o"), o3.Linear("3x0e+3x1o", "2x0e+1x1o")).double()


def test_relax_o3_linear_is_equivariant_at_gamma_zero():
    model = relax(_irreps_net())
    model.double()
    _set_gammas(model, 0.0)
    x = torch.randn(4, 10, dtype=torch.float64)
    e3nn_assert_equivariant(model, args_in=[x], irreps_in=["4x0e+2x1o"], irreps_out=["2x0e+1x1o"], tolerance=1e-10)


def test_relaxed_o3_linear_is_not_equivariant_at_gamma_one():
    model = relax(_irreps_net()).double()
    x = torch.randn(8, 10, dtype=torch.float64)
    from constrained_eq.symmetry import IrrepsRep

    err = equivariance_error(model, x, SO(3), act_in=IrrepsRep("4x0e+2x1o"), act_out=IrrepsRep("2x0e+1x1o"))
    assert err > 1e-3


def test_project_keeps_parameters_and_equals_gamma_zero():
    original = _irreps_net()
    keys, count = list(original.state_dict()), sum(p.numel() for p in original.parameters())
    ids = [id(p) for p in original.parameters()]
    model = relax(original)
    assert is_relaxed(model) and len(gammas(model)) == 2
    strict = project(model)
    assert not is_relaxed(strict) and is_relaxed(model)
    assert list(strict.state_dict()) == keys
    assert sum(p.numel() for p in strict.parameters()) == count
    assert [id(p) for p in strict.parameters()] == ids
    _set_gammas(model, 0.0)
    x = torch.randn(5, 10, dtype=torch.float64)
    assert torch.equal(model(x), strict(x))
    assert [id(p) for p in project(model, inplace=True).parameters()] == ids
    assert not is_relaxed(model)


def test_relax_tensor_product_uses_both_inputs():
    tp = o3.FullyConnectedTensorProduct("2x0e+1x1o", "1x1o", "2x0e+2x1o").double()
    model = relax(tp, gamma_init=0.0)
    assert isinstance(model, HomotopicLayer) and model.neq.branch.in_features == 8
    args = [torch.randn(4, 5, dtype=torch.float64), torch.randn(4, 3, dtype=torch.float64)]
    e3nn_assert_equivariant(
        model, args_in=args, irreps_in=["2x0e+1x1o", "1x1o"], irreps_out=["2x0e+2x1o"], tolerance=1e-10
    )
    assert list(project(model).state_dict()) == list(tp.state_dict())


def test_relax_vn_linear(device):
    model = relax(nn.Sequential(VNLinear(4, 3), VNLinear(3, 2))).double().to(device)
    x = torch.randn(6, 4, 3, dtype=torch.float64, device=device)
    assert equivariance_error(model, x, SO(3), act_in=VectorRep(4), act_out=VectorRep(2)) > 1e-3
    _set_gammas(model, 0.0)
    assert assert_equivariant(model, SO(3), x, act_in=VectorRep(4), act_out=VectorRep(2)) < 1e-10
    assert torch.equal(model(x), project(model)(x))


class TinyEGNN(nn.Module):
    """Dense EGNN-style layer on (h, pos): invariant messages, equivariant position update."""

    def __init__(self, features: int) -> None:
        super().__init__()
        self.phi = nn.Sequential(nn.Linear(2 * features + 1, features), nn.SiLU())
        self.phi_x = nn.Linear(features, 1)

    def forward(self, h, pos):
        diff = pos[..., :, None, :] - pos[..., None, :, :]
        dist = diff.pow(2).sum(-1, keepdim=True)
        n = h.shape[-2]
        h_i = h[..., :, None, :].expand(*h.shape[:-1], n, -1)
        h_j = h[..., None, :, :].expand(*h.shape[:-2], n, n, -1)
        pair = torch.cat([h_i, h_j, dist], -1)
        m = self.phi(pair)
        return h + m.sum(-2), pos + (diff * self.phi_x(m)).mean(-2)


class PositionBranch(nn.Module):
    def __init__(self, features: int) -> None:
        super().__init__()
        self.lin = nn.Linear(features + 3, features + 3, bias=False)

    def forward(self, h, pos):
        out = self.lin(torch.cat([h, pos], -1))
        return out[..., : h.shape[-1]], out[..., h.shape[-1] :]


def test_relax_egnn_style_layer_with_factory():
    layer = TinyEGNN(5).double()
    model = relax(layer, layers=[TinyEGNN], neq_factory=lambda m: PositionBranch(5)).double()
    rep = DirectSumRep(ScalarRep(5), VectorRep(1))

    def flat(z):
        h, pos = model(z[..., :5], z[..., 5:])
        return torch.cat([h, pos], -1)

    z = torch.randn(3, 4, 8, dtype=torch.float64)
    assert equivariance_error(flat, z, SO(3), act_in=rep) > 1e-3
    _set_gammas(model, 0.0)
    assert assert_equivariant(flat, SO(3), z, act_in=rep) < 1e-10
    assert torch.equal(model(z[..., :5], z[..., 5:])[1], project(model)(z[..., :5], z[..., 5:])[1])


class MeanConv(MessagePassing):
    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(aggr="mean")
        self.in_channels, self.out_channels = in_channels, out_channels
        self.lin = nn.Linear(in_channels, out_channels, bias=False)

    def forward(self, x, edge_index):
        return self.propagate(edge_index, x=self.lin(x))


def test_relax_message_passing_layer():
    n = 5
    edge_index = torch.tensor([[i, j] for i in range(n) for j in range(n) if i != j]).T
    model = relax(nn.ModuleList([MeanConv(3, 4)]), layers=[MessagePassing]).double()
    assert isinstance(model[0], HomotopicLayer)
    x = torch.randn(2, n, 3, dtype=torch.float64)
    _set_gammas(model, 0.0)
    reps = {"act_in": PermutationRep(n, 3), "act_out": PermutationRep(n, 4)}
    assert assert_equivariant(lambda v: model[0](v, edge_index), S(n), x, **reps) < 1e-10
    assert torch.equal(model[0](x, edge_index), project(model)[0](x, edge_index))


def test_relax_dry_run_reports_expected_and_actual():
    with pytest.raises(ValueError, match=r"(?s)expected: Tensor\(shape=\(2, 6\).*\n  actual:   Tensor\(shape=\(2, 5\)"):
        relax(nn.Sequential(o3.Linear("1o", "2x1o")), neq_factory=lambda m: nn.Linear(3, 5))


def test_relax_checks_unknown_layers_on_first_forward():
    class OnlyFeatures(nn.Module):
        def forward(self, h, pos):
            return h

    model = relax(TinyEGNN(2), layers=[TinyEGNN], neq_factory=lambda m: OnlyFeatures())
    with pytest.raises(ValueError, match=r"f_neq of the relaxed TinyEGNN must return what f_eq returns.*\n  expected: \("):
        model(torch.zeros(3, 2), torch.zeros(3, 3))


def test_relax_errors():
    with pytest.raises(ValueError, match=r"Expected 'scale' to be one of 'none', 'spectral', 'weight' \(got 'l2'\)"):
        relax(nn.Linear(2, 2), scale="l2")
    with pytest.raises(ValueError, match=r"Expected 'layers' to match at least one module of Sequential"):
        relax(nn.Sequential(nn.ReLU()))
    with pytest.raises(TypeError, match="pass neq_factory=lambda module"):
        relax(nn.Sequential(nn.Tanh()), layers=[nn.Tanh])
    with pytest.raises(TypeError, match="Expected 'layers' to be a list of nn.Module subclasses"):
        relax(nn.Linear(2, 2), layers=[int])


@pytest.mark.parametrize("scale", ["spectral", "weight"])
def test_scale_fixes_branch_norm(scale):
    model = relax(nn.Sequential(VNLinear(4, 3)), scale=scale)
    for _ in range(30):  # power iterations of the spectral norm
        model(torch.randn(2, 4, 3))
    weight = model[0].neq.branch.weight
    norm = torch.linalg.matrix_norm(weight, ord=2 if scale == "spectral" else "fro")
    assert torch.allclose(norm, torch.tensor(1.0), atol=1e-3)
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert "0.gamma" in trainable


def test_inplace_false_leaves_model_untouched():
    net = nn.Sequential(VNLinear(2, 2))
    relaxed = relax(net, inplace=False)
    assert is_relaxed(relaxed) and not is_relaxed(net)


def test_branch_contributions_and_recording():
    model = relax(nn.Sequential(VNLinear(2, 2), VNLinear(2, 1)), gamma_init=0.5)
    x = torch.randn(3, 2, 3)
    with recording(model) as branches:
        out = branch_contributions(model, x)
    z = x.flatten(-2)
    expected0 = 0.5 * (z @ model[0].neq.branch.weight.T).norm(dim=1).mean()
    assert out.shape == (2,) and torch.allclose(out[0], expected0)
    assert [b.last_input.shape for b in branches] == [(3, 6), (3, 6)]
    assert not any(b.recording for b in branches)
    assert isinstance(model[1].neq.branch, LinearBranch)


def test_contributions_over_a_loader_average_every_sample_of_every_batch():
    from constrained_eq.homotopy.recording import contribution_hooks
    from constrained_eq.run.evaluate import evaluate_split
    from constrained_eq.tasks.base import Task

    model = relax(nn.Sequential(VNLinear(2, 2), VNLinear(2, 1)), gamma_init=-0.5)
    batches = [torch.randn(3, 2, 3), torch.randn(5, 2, 3)]
    with contribution_hooks(model) as read:
        for x in batches:
            model(x)
    whole = torch.cat(batches)
    weight = model[0].neq.branch.weight
    expected0 = 0.5 * (whole.flatten(-2) @ weight.T).norm(dim=1).mean()  # |γ| times the mean over all 8 samples
    torch.testing.assert_close(read()[0], expected0.detach())
    torch.testing.assert_close(read(), branch_contributions(model, whole))
    assert not model[0].neq._forward_hooks  # hooks removed on exit

    class Identity(Task):
        def loss(self, output, batch):
            return output.pow(2).mean()

        def forward(self, model, batch):
            return model(batch)

    metrics = evaluate_split(Identity(), model, batches, equivariance=False, contributions=True)
    assert [metrics[f"branch.contribution.{i}"] for i in range(2)] == pytest.approx(read().tolist())


def test_reset_parameters_resets_both_branches_and_gamma():
    layer = HomotopicLayer(torch.nn.Linear(3, 3), LinearBranch(3, 3), gamma_init=0.7)
    with torch.no_grad():
        layer.gamma.fill_(-2.0)
        layer.eq.weight.zero_()
        layer.neq.weight.zero_()
    layer.reset_parameters()
    assert layer.gamma.item() == pytest.approx(0.7)
    assert layer.eq.weight.abs().sum() > 0 and layer.neq.weight.abs().sum() > 0


def _layer(value=1.0):
    return HomotopicLayer(nn.Linear(2, 2), LinearBranch(2, 2), gamma_init=value)


def _check_gammas(model):
    expected = [m.gamma for m in model.modules() if isinstance(m, HomotopicLayer)]
    got = gammas.variables(model)
    assert [id(g) for g in got] == [id(g) for g in expected]
    torch.testing.assert_close(gammas(model), torch.stack(expected))


def test_gammas_cache_follows_every_change_of_the_module_tree():
    model = relax(nn.Sequential(nn.Linear(2, 2), nn.Sequential(nn.Linear(2, 2), nn.ReLU())), layers=[nn.Linear])
    _check_gammas(model)  # fills the cache
    _check_gammas(model)  # served from it
    spare = _layer(0.3)  # built before the cache is filled, so its construction changes nothing later
    _check_gammas(model)
    model[1].insert(len(model[1]), spare)  # ModuleList/Sequential.insert writes _modules directly
    _check_gammas(model)
    assert len(gammas(model)) == 3
    del model[1][2]
    _check_gammas(model)
    model[1][1] = _layer(0.2)  # replace a non-relaxed child by a relaxed one
    _check_gammas(model)
    model[1] = nn.Sequential(nn.Linear(2, 2))  # replace a whole container holding a γ
    _check_gammas(model)
    model[1]._modules["0"] = _layer(0.4)  # private writes too
    _check_gammas(model)
    model.append(nn.Linear(2, 2))
    _check_gammas(model)
    relax(model, layers=[nn.Linear], inplace=True)  # relax the new layer in place
    _check_gammas(model)
    assert len(gammas(model)) == 3
    _check_gammas(model)
    # project: a view (another object) and in place
    view = project(model)
    with pytest.raises(ValueError, match="HomotopicLayer"):
        gammas(view)
    _check_gammas(model)
    project(model, inplace=True)
    with pytest.raises(ValueError, match="HomotopicLayer"):
        gammas(model)


def test_gammas_cache_per_model_copies_and_root_layer():
    import copy
    import gc
    import weakref

    a = nn.Sequential(_layer(0.1), _layer(0.2))
    b = nn.Sequential(_layer(0.5))
    torch.testing.assert_close(gammas(a), torch.tensor([0.1, 0.2]))
    torch.testing.assert_close(gammas(b), torch.tensor([0.5]))
    c = copy.deepcopy(a)
    _check_gammas(c)
    assert all(g not in set(gammas.variables(a)) for g in gammas.variables(c))
    shallow = copy.copy(a)  # same tree: same layers
    _check_gammas(shallow)
    shallow._modules = dict(shallow._modules, extra=_layer(0.9))
    _check_gammas(shallow)
    _check_gammas(a)
    root = _layer(0.7)  # the model is itself a homotopic layer
    _check_gammas(root)
    _check_gammas(root)
    # the cache adds no reference cycle: a dropped model is freed at once
    gc.disable()
    try:
        model = nn.Sequential(_layer(), nn.Sequential(_layer()))
        gammas(model)
        gammas(model)
        ref = weakref.ref(model)
        del model
        assert ref() is None
    finally:
        gc.enable()
