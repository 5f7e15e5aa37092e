import pytest
import torch
from torch_geometric.data import Batch
from torch_geometric.nn.models import SchNet as PyGSchNet

from constrained_eq.data.qm9 import synthetic_qm9
from constrained_eq.homotopy import HomotopicLayer, homotopic_layers, project
from constrained_eq.models.schnet import SchNet, SchNetBranch, radius_interaction_graph
from constrained_eq.symmetry import E, assert_equivariant

SMALL = dict(hidden_channels=16, num_filters=16, num_interactions=2, num_gaussians=10, cutoff=5.0)
count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731


def _molecules(dtype=torch.float64):
    batch = Batch.from_data_list(synthetic_qm9(num_molecules=3, min_atoms=4, max_atoms=7))
    return batch.z, batch.pos.to(dtype), batch.batch


def _assert_e3_invariant(model, dtype, e3_action, atol=None, rotate=True):
    """``assert_equivariant`` over E(3) of ``pos ↦ energies`` (invariant output) on 3 molecules (one sample)."""
    z, pos, batch = _molecules(dtype)

    def predict(positions):  # (B, atoms, 3) -> (B, 3, 1)
        return torch.stack([model(z, p, batch) for p in positions])

    return assert_equivariant(predict, E(3), pos[None], atol=atol, act_in=e3_action(True, rotate=rotate),
                              act_out="trivial")


def test_radius_graph_matches_brute_force():
    pos, batch = torch.randn(9, 3), torch.tensor([0] * 4 + [1] * 5)
    edge_index, weight = radius_interaction_graph(pos, batch, cutoff=1.5)
    expected = {
        (j, i) for i in range(9) for j in range(9)
        if i != j and batch[i] == batch[j] and (pos[i] - pos[j]).norm() <= 1.5
    }  # fmt: skip
    assert set(map(tuple, edge_index.T.tolist())) == expected
    torch.testing.assert_close(weight, (pos[edge_index[0]] - pos[edge_index[1]]).norm(dim=-1))
    capped, _ = radius_interaction_graph(pos, batch, cutoff=10.0, max_num_neighbors=2)
    assert torch.bincount(capped[1], minlength=9).max() <= 2


def test_vanilla_is_pyg_schnet_and_relaxed_adds_one_branch_per_block():
    vanilla, relaxed = SchNet(relaxed=False), SchNet()
    assert count(vanilla) == count(PyGSchNet()) == 455_809
    assert list(vanilla.state_dict()) == list(PyGSchNet().state_dict())
    assert count(relaxed) == 455_809 + 6 * (3 * 32 + 32 * 128 + 1)
    assert len(list(homotopic_layers(relaxed))) == 6


def test_project_gives_vanilla_keys_and_gamma_zero_outputs():
    vanilla, relaxed = SchNet(relaxed=False, **SMALL), SchNet(**SMALL)
    projected = project(relaxed)
    assert list(projected.state_dict()) == list(vanilla.state_dict()) and count(projected) == count(vanilla)
    for layer in homotopic_layers(relaxed):
        with torch.no_grad():
            layer.gamma.zero_()
    z, pos, batch = _molecules(torch.float32)
    torch.testing.assert_close(projected(z, pos, batch), relaxed(z, pos, batch))


@pytest.mark.parametrize("relaxed", [False, True])
def test_invariant_at_gamma_zero(relaxed, dtype, e3_action):
    model = SchNet(relaxed=relaxed, **SMALL).to(dtype)
    for layer in homotopic_layers(model):
        with torch.no_grad():
            layer.gamma.zero_()
    _assert_e3_invariant(model, dtype, e3_action)


def test_branch_sees_raw_coordinates_so_gamma_one_breaks_invariance(dtype, e3_action):
    model = SchNet(**SMALL).to(dtype)
    assert all(isinstance(layer.neq, SchNetBranch) for layer in homotopic_layers(model))
    for rotate in (True, False):  # rotations and translations alone
        with pytest.raises(AssertionError, match=r"not E\(3\)-equivariant"):
            _assert_e3_invariant(model, dtype, e3_action, atol=1e-4, rotate=rotate)


def test_bad_options_are_refused():
    with pytest.raises(ValueError, match=r"Expected 'readout' to be one of 'add', 'mean' \(got 'max'\)"):
        SchNet(readout="max", **SMALL)
    assert isinstance(SchNet(**SMALL).interactions[0], HomotopicLayer)
