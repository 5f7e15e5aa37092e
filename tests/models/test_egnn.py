import pytest
import torch
from e3nn import o3

from constrained_eq.data.nbody import fully_connected_edges
from constrained_eq.homotopy import HomotopicLayer, LinearBranch, homotopic_layers
from constrained_eq.models._reps import SO3_GENERATORS, cartesian_algebra
from constrained_eq.models.egnn import EGNN, EGNNBranch, nbody_egnn_inputs


def _graphs(b=3, n=5, dtype=torch.float64):
    loc = torch.randn(b * n, 3, dtype=dtype)
    vel = torch.randn(b * n, 3, dtype=dtype)
    charges = torch.randint(0, 2, (b * n, 1)).to(dtype) * 2 - 1
    return loc, vel, charges, fully_connected_edges(b, n), torch.arange(b).repeat_interleave(n)


def _equivariance_error(model, rot, shift):
    loc, vel, charges, edges, batch = _graphs()
    out = model(*nbody_egnn_inputs(loc, vel, charges, edges, batch))
    out_g = model(*nbody_egnn_inputs(loc @ rot.T + shift, vel @ rot.T, charges, edges, batch))
    return (out @ rot.T + shift - out_g).abs().max().item()


def test_parameter_counts_match_egnn_vel():
    vanilla, relaxed = EGNN(1, relaxed=False), EGNN(1)
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert count(vanilla) == 134_020  # EGNN_vel, hidden 64, 4 layers, edge attrs [q_i q_j, |x_i - x_j|^2]
    assert count(relaxed) == 134_020 + 4 * (70 * 67 + 1)


def test_projected_model_has_vanilla_state_dict_keys():
    vanilla, relaxed = EGNN(1, relaxed=False), EGNN(1)
    for i, layer in enumerate(relaxed.layers):
        relaxed.layers[i] = layer.eq
    assert list(relaxed.state_dict()) == list(vanilla.state_dict())
    relaxed.load_state_dict(vanilla.state_dict())


@pytest.mark.parametrize("relaxed", [False, True])
def test_equivariant_at_gamma_zero(relaxed):
    model = EGNN(1, relaxed=relaxed).double()
    for layer in homotopic_layers(model):
        with torch.no_grad():
            layer.gamma.zero_()
    assert _equivariance_error(model, o3.rand_matrix(dtype=torch.float64), torch.randn(3, dtype=torch.float64)) < 1e-9


def test_relaxed_model_breaks_rotation_but_not_translation():
    model = EGNN(1, gamma_init=1.0).double()
    assert len(list(homotopic_layers(model))) == 4
    eye = torch.eye(3, dtype=torch.float64)
    assert _equivariance_error(model, o3.rand_matrix(dtype=torch.float64), torch.zeros(3, dtype=torch.float64)) > 1e-3
    assert _equivariance_error(model, eye, 10 * torch.randn(3, dtype=torch.float64)) < 1e-9


def test_branch_carries_so3_algebra_and_is_equivariant_iff_lie_derivative_vanishes():
    branch = EGNNBranch(4)
    assert isinstance(branch.net, LinearBranch)
    a_in, a_out = branch.net.algebra_in, branch.net.algebra_out
    assert a_in.shape == (3, 10, 10) and a_out.shape == (3, 7, 7)
    torch.testing.assert_close(a_in[:, 3:6, 3:6], SO3_GENERATORS.float())
    assert a_in[:, 6:, 6:].abs().max() == 0
    # a rotation-equivariant W (scalars to scalars, a multiple of the identity from vectors to the vector)
    with torch.no_grad():
        w = torch.zeros(7, 10)
        w[:4, 6:] = torch.randn(4, 4)
        w[4:, :3] = 0.7 * torch.eye(3)
        w[4:, 3:6] = -0.2 * torch.eye(3)
        branch.net.linear.weight.copy_(w)
    lie = branch.net.weight @ a_in - a_out @ branch.net.weight
    assert lie.abs().max() < 1e-6


def test_cartesian_algebra_exponentiates_to_rotations():
    alg = cartesian_algebra([("scalar", 1), ("vector", 1)], dtype=torch.float64)
    rot = torch.linalg.matrix_exp(0.3 * alg[1])
    torch.testing.assert_close(rot[1:, 1:], torch.linalg.matrix_exp(0.3 * SO3_GENERATORS[1]))
    with pytest.raises(ValueError, match=r"Expected 'layout' kinds to be 'scalar' or 'vector' \(got 'tensor'\)"):
        cartesian_algebra([("tensor", 1)])


def test_mlp_branch_and_bad_arguments():
    model = EGNN(1, hidden_nf=8, n_layers=2, neq_hidden=16)
    assert isinstance(model.layers[0], HomotopicLayer)
    with pytest.raises(ValueError, match=r"Expected 'neq_hidden' to be None or a positive int \(got 0\)"):
        EGNN(1, neq_hidden=0)
    with pytest.raises(ValueError, match=r"Expected 'hidden_nf' to be a positive int \(got 0\)"):
        EGNN(1, hidden_nf=0)
    model.reset_parameters()


@pytest.mark.parametrize("relaxed", [False, True])
def test_adam_steps_reduce_mse(relaxed):
    model = EGNN(1, hidden_nf=16, n_layers=2, relaxed=relaxed, gamma_init=0.1)
    loc, vel, charges, edges, batch = _graphs(b=4, dtype=torch.float32)
    target = loc + vel + 0.1 * torch.randn_like(loc)
    opt = torch.optim.Adam(model.parameters(), lr=5e-3)
    inputs = nbody_egnn_inputs(loc, vel, charges, edges, batch)
    losses = []
    for _ in range(15):
        opt.zero_grad()
        loss = torch.nn.functional.mse_loss(model(*inputs), target)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.8 * losses[0]
