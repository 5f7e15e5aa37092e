import pytest
import torch

from constrained_eq.symmetry import (
    SO,
    C,
    DirectSumRep,
    E,
    IrrepsRep,
    O,
    S,
    ScalarRep,
    VectorRep,
    parse_group,
)

GROUPS = [SO(3), SO(2), O(3), E(3), C(4), S(5)]


@pytest.mark.parametrize("group", GROUPS, ids=repr)
def test_repr_parses_back(group):
    assert parse_group(repr(group)) == group
    assert hash(parse_group(repr(group))) == hash(group)


def test_parse_errors():
    with pytest.raises(ValueError, match=r"Expected 'text' to be one of SO\(n\), O\(n\), E\(n\), C\(n\), S\(n\) \(got 'SU\(2\)'\)"):
        parse_group("SU(2)")
    with pytest.raises(ValueError, match=r"Expected 'n' to be 2 or 3 for SO\(n\) \(got 4\)"):
        SO(4)


@pytest.mark.parametrize("group", GROUPS, ids=repr)
def test_samples_are_orthogonal(group):
    g = group.sample(7, dtype=torch.float64)
    q = g[:, :3, :3] if isinstance(group, E) else g
    eye = torch.eye(q.shape[-1], dtype=torch.float64)
    assert g.shape == (7, group.dim, group.dim)
    assert torch.allclose(q @ q.transpose(-1, -2), eye.expand_as(q), atol=1e-12)
    if isinstance(group, SO):
        assert torch.allclose(torch.linalg.det(q), torch.ones(7, dtype=torch.float64))


def test_sample_generator_is_reproducible():
    a = SO(3).sample(3, generator=torch.Generator().manual_seed(1))
    b = SO(3).sample(3, generator=torch.Generator().manual_seed(1))
    assert torch.equal(a, b)


def test_o3_draws_reflections():
    dets = torch.linalg.det(O(3).sample(200, dtype=torch.float64))
    assert (dets < 0).any() and (dets > 0).any()


def test_finite_groups_have_no_lie_algebra():
    with pytest.raises(ValueError, match=r"Expected a continuous group for 'lie_algebra\(\)' \(got C\(4\)"):
        C(4).lie_algebra()


@pytest.mark.parametrize(
    "rep,group",
    [
        (IrrepsRep("2x0e+1x1o+1x2e"), SO(3)),
        (VectorRep(3), SO(3)),
        (DirectSumRep(ScalarRep(2), VectorRep(1), IrrepsRep("1e")), O(3)),
        (VectorRep(2, vector_dim=2), SO(2)),
    ],
    ids=repr,
)
def test_rep_algebra_exponentiates_to_rep_matrix(rep, group):
    algebra, group_algebra = rep.lie_algebra(torch.float64), group.lie_algebra(torch.float64)
    for a, ga in zip(algebra, group_algebra, strict=True):
        g = torch.linalg.matrix_exp(0.37 * ga)
        assert torch.allclose(torch.linalg.matrix_exp(0.37 * a), rep.matrix(g), atol=1e-12)
    g = group.sample(4, dtype=torch.float64)
    m = rep.matrix(g)
    assert torch.allclose(m[0] @ m[1], rep.matrix(g[0] @ g[1]), atol=1e-12)


def test_irreps_rep_on_reflection_uses_parity():
    minus = -torch.eye(3, dtype=torch.float64)
    assert torch.equal(IrrepsRep("1o+1e").matrix(minus).diagonal(), torch.tensor([-1.0] * 3 + [1.0] * 3).double())


def test_irreps_rep_error():
    with pytest.raises(ValueError, match=r"Expected 'irreps' to be an e3nn irreps string like '8x0e\+2x1o' \(got 'abc'\)"):
        IrrepsRep("abc")
