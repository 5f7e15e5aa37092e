import pytest
import torch
from torch_geometric.data import Batch

from constrained_eq.data.mocap import synthetic_mocap
from constrained_eq.homotopy import homotopic_layers, project
from constrained_eq.models.egnn import EGNNBranch
from constrained_eq.models.egno import EGNO, TemporalConv, mocap_egno_inputs
from constrained_eq.symmetry import SO, E, VectorRep, assert_equivariant

SMALL = dict(hidden_nf=8, n_layers=2, num_timesteps=4, num_modes=2, time_emb_dim=4)
count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731


def _graphs(dtype=torch.float64):
    data = synthetic_mocap(num_trials=1, num_frames=40, delta_frame=5)
    batch = Batch.from_data_list([data[i] for i in range(2)])
    batch.pos, batch.vel = batch.pos.to(dtype), batch.vel.to(dtype)
    return batch


def _assert_e3_equivariant(model, dtype, e3_action, atol=None):
    """``assert_equivariant`` over E(3) of ``[pos, vel] ↦ x^{1..T}`` on two MoCap graphs (one sample)."""
    data = _graphs(dtype)

    def predict(states):  # (B, |V|, 2, 3) -> (B, T, |V|, 3)
        outs = []
        for s in states:
            data.pos, data.vel = s[:, 0], s[:, 1]
            outs.append(model(*mocap_egno_inputs(data)))
        return torch.stack(outs)

    return assert_equivariant(predict, E(3), torch.stack([data.pos, data.vel], 1)[None], atol=atol,
                              act_in=e3_action(True, False), act_out=e3_action(True))


def test_output_is_a_trajectory_on_mocap_graphs():
    data = _graphs(torch.float32)
    out = EGNO(**SMALL)(*mocap_egno_inputs(data))
    assert out.shape == (4, data.pos.shape[0], 3)
    torch.nn.functional.mse_loss(out[-1], data.y).backward()


@pytest.mark.parametrize("relaxed", [False, True])
def test_equivariant_at_gamma_zero(relaxed, dtype, e3_action):
    model = EGNO(relaxed=relaxed, **SMALL).to(dtype)
    for layer in homotopic_layers(model):
        with torch.no_grad():
            layer.gamma.zero_()
    _assert_e3_equivariant(model, dtype, e3_action)


def test_relaxed_model_breaks_rotation_equivariance(dtype, e3_action):
    model = EGNO(**SMALL).to(dtype)
    assert all(isinstance(layer.neq, EGNNBranch) for layer in homotopic_layers(model))
    with pytest.raises(AssertionError, match=r"not E\(3\)-equivariant"):
        _assert_e3_equivariant(model, dtype, e3_action, atol=1e-4)


def test_project_gives_vanilla_keys_and_counts():
    vanilla, relaxed = EGNO(relaxed=False, **SMALL), EGNO(**SMALL)
    assert count(relaxed) == count(vanilla) + 2 * ((6 + 8) * (8 + 3) + 1)
    projected = project(relaxed)
    assert list(projected.state_dict()) == list(vanilla.state_dict()) and count(projected) == count(vanilla)


def test_temporal_conv_commutes_with_rotations_and_refuses_bad_sizes(dtype):
    conv = TemporalConv(2, 3, num_modes=3)

    def per_sample(u):  # (B, T, nodes, channels, xyz): the convolution mixes channels along time
        return torch.stack([conv(s.transpose(-1, -2)).transpose(-1, -2) for s in u])

    assert_equivariant(per_sample, SO(3), torch.randn(2, 6, 5, 2, 3, dtype=dtype), act_in=VectorRep(1))
    with pytest.raises(ValueError, match=r"Expected 'num_timesteps' to be a positive int \(got 0\)"):
        EGNO(num_timesteps=0)


def test_forward_reads_nothing_back_to_the_host():
    from constrained_eq.testing.sync_audit import forbid_host_reads

    model = EGNO(**SMALL)
    inputs = mocap_egno_inputs(_graphs(torch.float32))
    with forbid_host_reads():
        model(*inputs)
