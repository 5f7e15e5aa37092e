import pytest
import torch

from constrained_eq.data.nbody import fully_connected_edges
from constrained_eq.homotopy import HomotopicLayer, LinearBranch, homotopic_layers
from constrained_eq.models.egnn import EGNN, EGNNBranch, nbody_egnn_inputs
from constrained_eq.symmetry import E, assert_equivariant, cartesian_generators


def _graphs(b=3, n=5, dtype=torch.float64):
    loc = torch.randn(b * n, 3, dtype=dtype)
    vel = torch.randn(b * n, 3, dtype=dtype)
    charges = torch.randint(0, 2, (b * n, 1)).to(dtype) * 2 - 1
    return loc, vel, charges, fully_connected_edges(b, n), torch.arange(b).repeat_interleave(n)


def _assert_e3_equivariant(model, dtype, e3_action, atol=None, rotate=True):
    """``assert_equivariant`` over E(3) of ``[loc, vel] ↦ x'`` on 3 graphs of 5 nodes (one sample: all 15 nodes)."""
    loc, vel, charges, edges, batch = _graphs(dtype=dtype)

    def predict(states):  # (B, 15, 2, 3) -> (B, 15, 3)
        return torch.stack([model(*nbody_egnn_inputs(s[:, 0], s[:, 1], charges, edges, batch)) for s in states])

    return assert_equivariant(predict, E(3), torch.stack([loc, vel], 1)[None], atol=atol,
                              act_in=e3_action(True, False, rotate=rotate), act_out=e3_action(True, rotate=rotate))


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
def test_equivariant_at_gamma_zero(relaxed, dtype, e3_action):
    model = EGNN(1, relaxed=relaxed).to(dtype)
    for layer in homotopic_layers(model):
        with torch.no_grad():
            layer.gamma.zero_()
    _assert_e3_equivariant(model, dtype, e3_action)


def test_relaxed_model_breaks_rotation_but_not_translation(dtype, e3_action):
    model = EGNN(1, gamma_init=1.0).to(dtype)
    assert len(list(homotopic_layers(model))) == 4
    with pytest.raises(AssertionError, match=r"not E\(3\)-equivariant"):
        _assert_e3_equivariant(model, dtype, e3_action, atol=1e-3)
    _assert_e3_equivariant(model, dtype, e3_action, rotate=False)


def test_branch_carries_so3_algebra_and_is_equivariant_iff_lie_derivative_vanishes():
    branch = EGNNBranch(4)
    assert isinstance(branch.net, LinearBranch)
    a_in, a_out = branch.net.algebra_in, branch.net.algebra_out
    assert a_in.shape == (3, 10, 10) and a_out.shape == (3, 7, 7)
    torch.testing.assert_close(a_in[:, 3:6, 3:6], cartesian_generators(3, dtype=torch.float32))
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


def test_branch_algebra_is_the_direct_sum_of_the_cartesian_generators():
    """[x, v, h] ↦ [Δh, Δx]: J_k on each vector block, 0 on the scalars (hidden_nf = 2)."""
    a_in, a_out = EGNNBranch(2).net.algebra_in, EGNNBranch(2).net.algebra_out
    j, zeros = cartesian_generators(3, dtype=torch.float32), torch.zeros(3, 2, 2)
    for k in range(3):
        torch.testing.assert_close(a_in[k], torch.block_diag(j[k], j[k], zeros[k]), rtol=0, atol=0)
        torch.testing.assert_close(a_out[k], torch.block_diag(zeros[k], j[k]), rtol=0, atol=0)


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
