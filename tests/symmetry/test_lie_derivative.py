import torch
from e3nn import o3

from constrained_eq.symmetry import IrrepsRep, VectorRep, cartesian_generators, lie_derivative, linear_lie_derivative


def test_jvp_matches_analytic_formula_for_linear_maps():
    a_in, a_out = IrrepsRep("2x1o+1x0e").lie_algebra(torch.float64), VectorRep(2).lie_algebra(torch.float64)
    w = torch.randn(6, 7, dtype=torch.float64)
    x = torch.randn(4, 7, dtype=torch.float64)
    jvp = lie_derivative(lambda z: z @ w.T, x, a_in, a_out)
    analytic = torch.einsum("koi,ni->kno", linear_lie_derivative(w, a_in, a_out), x)
    assert jvp.shape == (3, 4, 6)
    assert torch.allclose(jvp, analytic, atol=1e-12)


def test_jvp_matches_finite_difference_on_nonlinear_map():
    J = cartesian_generators(3, dtype=torch.float64)
    f = lambda z: torch.tanh(z @ torch.arange(9.0, dtype=torch.float64).reshape(3, 3))  # noqa: E731
    x = torch.randn(5, 3, dtype=torch.float64)
    t = 1e-4
    for a in J:
        rot = lambda s, a=a: torch.linalg.matrix_exp(s * a)  # noqa: E731
        fd = ((f(x @ rot(t).T) @ rot(t)) - (f(x @ rot(-t).T) @ rot(-t))) / (2 * t)
        assert torch.allclose(lie_derivative(f, x, a, a), fd, atol=1e-6)


def test_lie_derivative_vanishes_on_equivariant_layers():
    layer = o3.Linear("3x0e+2x1o+1x2e", "2x0e+3x1o+2x2e").double()
    rep_in, rep_out = IrrepsRep("3x0e+2x1o+1x2e"), IrrepsRep("2x0e+3x1o+2x2e")
    x = torch.randn(4, rep_in.dim, dtype=torch.float64)
    out = lie_derivative(layer, x, rep_in.lie_algebra(torch.float64), rep_out.lie_algebra(torch.float64))
    assert out.abs().max() < 1e-10


def test_lie_derivative_of_invariant_and_of_vector_channels():
    J = cartesian_generators(3, dtype=torch.float64)
    x = torch.randn(2, 4, 3, dtype=torch.float64)  # VN features (C, 3): generators act on the last axis
    assert lie_derivative(lambda z: z.norm(dim=-1), x, J).abs().max() < 1e-12
    assert lie_derivative(lambda z: 2 * z, x, J, J).abs().max() < 1e-12
    assert linear_lie_derivative(torch.randn(3, 3, dtype=torch.float64), J, J).abs().max() > 1e-3
