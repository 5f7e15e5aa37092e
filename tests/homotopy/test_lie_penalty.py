import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from constrained_eq.core.problem.constraints import Inequality, Penalty
from constrained_eq.homotopy import HomotopicLayer, LinearBranch, set_recording
from constrained_eq.homotopy.lie_penalty import _action, _gram, _lie_derivatives, _support
from constrained_eq.symmetry import (
    SO,
    C,
    IrrepsRep,
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


# ---------------------------------------------------------------- the Gram form against the direct sums
def _reference(branch, x):
    """ℓ and b summed directly over the N rows (the K × N × out tensor of L_A x), as before the Gram form."""
    weight = branch.weight
    lie = weight @ branch.algebra_in - branch.algebra_out @ weight
    return torch.einsum("koi,ni->kno", lie, x).norm(), (x @ weight.T).norm()


def _irreps(counts):
    return "+".join(f"{n}x{deg}{'e' if deg % 2 == 0 else 'o'}" for deg, n in enumerate(counts) if n) or "1x0e"


def _so3_branch(counts_in, counts_out, weight_scale=1.0, seed=0):
    rep_in, rep_out = IrrepsRep(_irreps(counts_in)), IrrepsRep(_irreps(counts_out))
    generator = torch.Generator().manual_seed(seed)
    branch = LinearBranch(rep_in.dim, rep_out.dim, rep_in, rep_out).double()
    with torch.no_grad():
        branch.linear.weight.copy_(weight_scale * torch.randn(rep_out.dim, rep_in.dim, generator=generator,
                                                              dtype=torch.float64))
    set_recording(branch)
    return branch, generator


def _value_and_grad(fn, branch):
    branch.linear.weight.grad = None
    value = fn()
    value.backward()
    return value.detach(), branch.linear.weight.grad.clone()


def _assert_matches_reference(branch, x):
    branch(x)
    pairs = [(lambda: lie_derivative_norms(branch)[0], lambda: _reference(branch, x)[0]),
             (lambda: branch_norms(branch)[0], lambda: _reference(branch, x)[1]),
             (lambda: lie_regularizer(branch)[0], lambda: sum(_reference(branch, x)))]
    for new, old in pairs:
        (value, grad), (ref_value, ref_grad) = _value_and_grad(new, branch), _value_and_grad(old, branch)
        assert torch.isfinite(grad).all()
        torch.testing.assert_close(value, ref_value, rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(grad, ref_grad, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("rows", [40, 3])  # N ≥ in: Gram form; N < in: direct form
def test_gram_form_equals_direct_sums(rows):
    branch, generator = _so3_branch((2, 2, 1), (1, 3))
    x = torch.randn(rows, branch.in_features, generator=generator, dtype=torch.float64)
    assert (_gram(x) is None) == (rows < branch.in_features)
    _assert_matches_reference(branch, x)


@pytest.mark.parametrize("rows", [40, 3])
@pytest.mark.parametrize("zero", ["input", "weight"])
def test_zero_input_or_weight_gives_zero_with_finite_gradients(zero, rows):
    branch, generator = _so3_branch((1, 2), (2, 1), weight_scale=0.0 if zero == "weight" else 1.0)
    x = torch.randn(rows, branch.in_features, generator=generator, dtype=torch.float64)
    x = torch.zeros_like(x) if zero == "input" else x
    _assert_matches_reference(branch, x)
    value, grad = _value_and_grad(lambda: lie_regularizer(branch)[0], branch)
    assert value.item() == 0.0 and torch.equal(grad, torch.zeros_like(grad))  # the subgradient 0 of ‖·‖ at 0


def test_gram_form_keeps_the_weight_dtype():
    branch, generator = _so3_branch((1, 1), (1, 1))
    branch.float()
    x = torch.randn(30, branch.in_features, generator=generator)
    branch(x)
    assert lie_regularizer(branch).dtype == torch.float32
    branch.double()
    branch.last_input = x  # a float32 input recorded for a float64 branch is cast to the weight's dtype
    assert lie_regularizer(branch).dtype == torch.float64
    torch.testing.assert_close(lie_regularizer(branch)[0], sum(_reference(branch, x.double())))


@settings(max_examples=12, deadline=None)
@given(counts_in=st.tuples(st.integers(0, 3), st.integers(0, 3), st.integers(0, 2)),
       counts_out=st.tuples(st.integers(0, 3), st.integers(0, 3), st.integers(0, 2)),
       rows=st.integers(1, 40), seed=st.integers(0, 2**16))
def test_gram_form_equals_direct_sums_on_random_shapes(counts_in, counts_out, rows, seed):
    branch, generator = _so3_branch(counts_in, counts_out, seed=seed)
    _assert_matches_reference(branch, torch.randn(rows, branch.in_features, generator=generator,
                                                  dtype=torch.float64))


@pytest.mark.parametrize("rows", [200, 5])  # Gram form (factored) and direct form
def test_low_rank_form_equals_direct_sums(rows):
    branch, generator = _so3_branch((40, 2), (30, 1))  # EGNN-like: few vectors among many scalars
    support = _support(branch)
    assert support is not None and [t.tolist() for t in support] == [list(range(40, 46)), list(range(30, 33))]
    _assert_matches_reference(branch, torch.randn(rows, branch.in_features, generator=generator,
                                                  dtype=torch.float64))


def test_low_rank_support_follows_the_buffers():
    branch, _ = _so3_branch((40, 2), (30, 1))
    assert _support(branch) is not None
    assert _support(_so3_branch((1, 3), (1, 3))[0]) is None  # mostly vectors: the plain Gram form
    branch.float()  # new buffers: the support is read again, and the value keeps float32
    x = torch.randn(200, branch.in_features)
    branch(x)
    assert _support(branch) is not None and lie_regularizer(branch).dtype == torch.float32


@settings(max_examples=12, deadline=None)
@given(scalars_in=st.integers(0, 40), vectors_in=st.integers(0, 3), scalars_out=st.integers(0, 40),
       vectors_out=st.integers(0, 3), rows=st.integers(1, 120), seed=st.integers(0, 2**16))
def test_low_rank_or_not_equals_direct_sums_on_random_shapes(scalars_in, vectors_in, scalars_out, vectors_out, rows,
                                                              seed):
    branch, generator = _so3_branch((scalars_in, vectors_in), (scalars_out, vectors_out), seed=seed)
    _assert_matches_reference(branch, torch.randn(rows, branch.in_features, generator=generator,
                                                  dtype=torch.float64))


def test_stacked_branches_keep_the_model_order():
    # alike, alike, another shape, fewer rows than inputs (direct form), alike again: three groups, model order
    shapes = [((40, 2), (30, 1)), ((40, 2), (30, 1)), ((1, 3), (2, 1)), ((40, 2), (30, 1)), ((40, 2), (30, 1))]
    branches = [_so3_branch(cin, cout, seed=i)[0] for i, (cin, cout) in enumerate(shapes)]
    model = nn.ModuleList(branches)
    generator = torch.Generator().manual_seed(1)
    for i, branch in enumerate(branches):
        branch(torch.randn(10 if i == 3 else 200, branch.in_features, generator=generator, dtype=torch.float64))
    expected = torch.stack([sum(_reference(b, b.last_input)) for b in branches])
    value = lie_regularizer(model)
    torch.testing.assert_close(value, expected, rtol=1e-10, atol=1e-12)
    grads = torch.autograd.grad(value.sum(), [b.linear.weight for b in branches])
    ref_grads = torch.autograd.grad(expected.sum(), [b.linear.weight for b in branches])
    for grad, ref in zip(grads, ref_grads, strict=True):
        torch.testing.assert_close(grad, ref, rtol=1e-9, atol=1e-12)


def test_alike_branches_that_saw_different_numbers_of_rows_are_each_their_own_sum():
    # the same shapes and generators, N = 200 and N = 120 rows (both Gram forms): each value is its own branch's
    # direct sum over its own rows
    branches = [_so3_branch((40, 2), (30, 1), seed=i)[0] for i in range(2)]
    generator = torch.Generator().manual_seed(2)
    for branch, rows in zip(branches, (200, 120), strict=True):
        branch(torch.randn(rows, branch.in_features, generator=generator, dtype=torch.float64))
    expected = torch.stack([sum(_reference(b, b.last_input)) for b in branches])
    torch.testing.assert_close(lie_regularizer(nn.ModuleList(branches)), expected, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("rows", [200, 5])
def test_sparse_generators_give_the_dense_lie_derivative(rows):
    branch, generator = _so3_branch((2, 8, 2), (2, 6, 1))  # mostly l = 1, 2: no low rank, sparse generators
    action = _action(branch)
    assert action.rows is None and action.p_entries is not None and action.q_entries is not None
    weight = torch.stack([branch.weight, 2.0 * branch.weight])
    dense = weight.unsqueeze(1) @ branch.algebra_in - branch.algebra_out @ weight.unsqueeze(1)
    torch.testing.assert_close(_lie_derivatives(branch, weight, action), dense, rtol=1e-12, atol=1e-12)
    _assert_matches_reference(branch, torch.randn(rows, branch.in_features, generator=generator,
                                                  dtype=torch.float64))
