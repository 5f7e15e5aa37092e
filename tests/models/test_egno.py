import pytest
import torch
from e3nn import o3
from torch_geometric.data import Batch

from constrained_eq.data.mocap import synthetic_mocap
from constrained_eq.homotopy import homotopic_layers, project
from constrained_eq.models.egnn import EGNNBranch
from constrained_eq.models.egno import EGNO, TemporalConv, mocap_egno_inputs

SMALL = dict(hidden_nf=8, n_layers=2, num_timesteps=4, num_modes=2, time_emb_dim=4)
count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731


def _graphs(dtype=torch.float64):
    data = synthetic_mocap(num_trials=1, num_frames=40, delta_frame=5)
    batch = Batch.from_data_list([data[i] for i in range(2)])
    batch.pos, batch.vel = batch.pos.to(dtype), batch.vel.to(dtype)
    return batch


def _equivariance_error(model, rot, shift):
    data = _graphs()
    out = model(*mocap_egno_inputs(data))
    data.pos, data.vel = data.pos @ rot.T + shift, data.vel @ rot.T
    return (out @ rot.T + shift - model(*mocap_egno_inputs(data))).abs().max().item()


def test_output_is_a_trajectory_on_mocap_graphs():
    data = _graphs(torch.float32)
    out = EGNO(**SMALL)(*mocap_egno_inputs(data))
    assert out.shape == (4, data.pos.shape[0], 3)
    torch.nn.functional.mse_loss(out[-1], data.y).backward()


@pytest.mark.parametrize("relaxed", [False, True])
def test_equivariant_at_gamma_zero(relaxed):
    model = EGNO(relaxed=relaxed, **SMALL).double()
    for layer in homotopic_layers(model):
        with torch.no_grad():
            layer.gamma.zero_()
    assert _equivariance_error(model, o3.rand_matrix(dtype=torch.float64), torch.randn(3, dtype=torch.float64)) < 1e-9


def test_relaxed_model_breaks_rotation_equivariance():
    model = EGNO(**SMALL).double()
    assert all(isinstance(layer.neq, EGNNBranch) for layer in homotopic_layers(model))
    zero = torch.zeros(3, dtype=torch.float64)
    assert _equivariance_error(model, o3.rand_matrix(dtype=torch.float64), zero) > 1e-4


def test_project_gives_vanilla_keys_and_counts():
    vanilla, relaxed = EGNO(relaxed=False, **SMALL), EGNO(**SMALL)
    assert count(relaxed) == count(vanilla) + 2 * ((6 + 8) * (8 + 3) + 1)
    projected = project(relaxed)
    assert list(projected.state_dict()) == list(vanilla.state_dict()) and count(projected) == count(vanilla)


def test_temporal_conv_commutes_with_rotations_and_refuses_bad_sizes():
    conv, rot = TemporalConv(2, 3, num_modes=3), o3.rand_matrix()
    u = torch.randn(6, 5, 3, 2)  # (T, nodes, xyz, channels)
    torch.testing.assert_close(conv(torch.einsum("ij,tnjc->tnic", rot, u)), torch.einsum("ij,tnjc->tnic", rot, conv(u)))
    with pytest.raises(ValueError, match=r"Expected 'num_timesteps' to be a positive int \(got 0\)"):
        EGNO(num_timesteps=0)


def test_forward_reads_nothing_back_to_the_host():
    from constrained_eq.core.sync_audit import forbid_host_reads

    model = EGNO(**SMALL)
    inputs = mocap_egno_inputs(_graphs(torch.float32))
    with forbid_host_reads():
        model(*inputs)
