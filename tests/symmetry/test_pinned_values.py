"""Every symmetry metric pinned to a value derived by hand on a closed-form case.

A metric that is only tested as "small for an equivariant model, large for a relaxed one" can lose a
constant factor unnoticed; here each one is compared to its exact value.
"""

import math

import pytest
import torch
from torch import nn

from constrained_eq.homotopy import HomotopicLayer
from constrained_eq.symmetry import (
    SO,
    VectorRep,
    cartesian_generators,
    equivariance_error,
    equivariance_error_bound,
    equivariance_error_bound_from_activations,
    lie_derivative,
    linear_lie_derivative,
    projection_error,
    projection_error_bound,
    projection_error_bound_from_activations,
)

F64 = torch.float64


def _angle_2d(g: torch.Tensor) -> torch.Tensor:
    return torch.atan2(g[:, 1, 0], g[:, 0, 0])


# --- equivariance error -------------------------------------------------------------------------


def test_translation_has_error_norm_c_minus_rc_per_group_element():
    """f(x) = x + c: ρ(g) f(x) − f(ρ(g) x) = Rc − c, so each entry is ‖Rc − c‖ = 2|sin(θ/2)|·‖c‖ in SO(2)."""
    c = torch.tensor([3.0, 4.0], dtype=F64)  # ‖c‖ = 5
    x = torch.randn(4, 2, dtype=F64)
    rep = VectorRep(1, vector_dim=2)
    errors = equivariance_error(lambda v: v + c, x, SO(2), n=6, act_in=rep, reduction="none",
                                generator=torch.Generator().manual_seed(3))
    g = SO(2).sample(6, generator=torch.Generator().manual_seed(3), dtype=F64)
    expected = 2 * _angle_2d(g).div(2).sin().abs() * 5.0  # (n,), the same for every sample of the batch
    assert errors.shape == (6, 4)
    torch.testing.assert_close(errors, expected[:, None].expand(6, 4), rtol=1e-12, atol=1e-12)
    mean = equivariance_error(lambda v: v + c, x, SO(2), n=6, act_in=rep, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(mean, expected.mean(), rtol=1e-12, atol=1e-12)


def test_translation_error_under_haar_so3_is_four_thirds_norm_c():
    r"""For Haar R, Rc is uniform on the sphere of radius ‖c‖, so u = ĉ·Rĉ ~ U[−1, 1] and

    E‖Rc − c‖ = ‖c‖ E√(2 − 2u) = ‖c‖ · ½∫_{−1}^{1} √(2 − 2u) du = 4/3 ‖c‖ (standard deviation √2/3 ‖c‖).
    """
    c = torch.tensor([0.0, 2.0, 0.0], dtype=F64)
    x = torch.randn(1, 3, dtype=F64)
    n = 20_000
    err = equivariance_error(lambda v: v + c, x, SO(3), n=n, act_in=VectorRep(1),
                             generator=torch.Generator().manual_seed(0))
    se = math.sqrt(2) / 3 * 2.0 / math.sqrt(n)
    assert abs(float(err) - 4 / 3 * 2.0) < 5 * se


def test_the_norm_is_taken_over_all_channels_of_a_sample():
    """f(X) = X + C with C of two channels: per-sample error ‖(R − I) C‖_F = √(‖Rc₁ − c₁‖² + ‖Rc₂ − c₂‖²)."""
    c = torch.tensor([[1.0, 0.0], [0.0, 2.0]], dtype=F64)
    x = torch.zeros(3, 2, 2, dtype=F64)
    errors = equivariance_error(lambda v: v + c, x, SO(2), n=4, act_in=VectorRep(2, vector_dim=2), reduction="none",
                                generator=torch.Generator().manual_seed(1))
    g = SO(2).sample(4, generator=torch.Generator().manual_seed(1), dtype=F64)
    chord = 2 * _angle_2d(g).div(2).sin().abs()
    torch.testing.assert_close(errors, (chord * math.sqrt(1 + 4))[:, None].expand(4, 3), rtol=1e-12, atol=1e-12)


def test_invariant_output_error_is_the_change_of_the_output():
    """f(x) = x₁ declared invariant: the error is |(Rx)₁ − x₁|; for x = e₁ that is |cos θ − 1|."""
    x = torch.tensor([[1.0, 0.0]], dtype=F64)
    errors = equivariance_error(lambda v: v[:, :1], x, SO(2), n=5, act_in=VectorRep(1, vector_dim=2),
                                act_out="trivial", reduction="none", generator=torch.Generator().manual_seed(2))
    g = SO(2).sample(5, generator=torch.Generator().manual_seed(2), dtype=F64)
    torch.testing.assert_close(errors[:, 0], (_angle_2d(g).cos() - 1).abs(), rtol=1e-12, atol=1e-12)


# --- projection error ---------------------------------------------------------------------------


class _Scale(nn.Module):
    def __init__(self, factor: float) -> None:
        super().__init__()
        self.factor = factor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.factor * x


def test_projection_error_of_one_layer_is_gamma_b_norm_x_and_meets_theorem_4_1():
    """f = f_eq + γ f_neq with f_neq(x) = B x: ‖f_γ(x) − f_0(x)‖ = |γ| B ‖x‖, Thm 4.1 with L = 1 is tight."""
    model = HomotopicLayer(_Scale(2.0), _Scale(3.0), gamma_init=0.25).double()
    x = torch.tensor([[3.0, 4.0, 0.0], [0.0, 0.0, 1.0]], dtype=F64)  # ‖x‖ = 5 and 1
    with torch.no_grad():
        measured = projection_error(model, x)
    torch.testing.assert_close(measured, torch.tensor(0.25 * 3.0 * (5 + 1) / 2, dtype=F64))
    bound = projection_error_bound(torch.tensor([0.25], dtype=F64), B=3.0, M=2.0, x_norm=5.0)
    torch.testing.assert_close(bound, torch.tensor(0.25 * 3.0 * 5.0, dtype=F64))


def test_projection_error_of_two_layers_by_hand():
    """Two layers x ↦ (2 + 3γ₂)(2 + 3γ₁)x: the error is |(2 + 3γ₂)(2 + 3γ₁) − 4| ‖x‖."""
    model = nn.Sequential(HomotopicLayer(_Scale(2.0), _Scale(3.0), gamma_init=0.5),
                          HomotopicLayer(_Scale(2.0), _Scale(3.0), gamma_init=-0.25)).double()
    x = torch.tensor([[0.0, 6.0, 8.0]], dtype=F64)  # ‖x‖ = 10
    with torch.no_grad():
        measured = projection_error(model, x)
    torch.testing.assert_close(measured, torch.tensor(abs(3.5 * 1.25 - 4) * 10, dtype=F64))


def test_projection_error_of_a_tuple_output_joins_the_parts_per_sample():
    """Outputs (a, b): the per-sample error is √(‖Δa‖² + ‖Δb‖²), here γB‖x‖·√(1 + 4)."""

    class Two(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.layer = HomotopicLayer(_Scale(1.0), _Scale(1.0), gamma_init=0.5)

        def forward(self, x):
            y = self.layer(x)
            return y, 2 * y

    x = torch.tensor([[1.0, 0.0], [0.0, 3.0]], dtype=F64)
    with torch.no_grad():
        measured = projection_error(Two().double(), x)
    torch.testing.assert_close(measured, torch.tensor(0.5 * (1 + 3) / 2 * math.sqrt(5), dtype=F64))


# --- Lie derivative -----------------------------------------------------------------------------

# W = diag(1, 2, 3): W J_z − J_z W = [[0, 1, 0], [1, 0, 0], [0, 0, 0]] (by hand), and similarly for J_x, J_y.
W = torch.diag(torch.tensor([1.0, 2.0, 3.0], dtype=F64))
COMMUTATORS = torch.tensor(
    [
        [[0.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, 1.0, 0.0]],  # W J_x − J_x W
        [[0.0, 0.0, -2.0], [0.0, 0.0, 0.0], [-2.0, 0.0, 0.0]],  # W J_y − J_y W
        [[0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 0.0]],  # W J_z − J_z W
    ],
    dtype=F64,
)


def test_linear_lie_derivative_is_the_commutator_by_hand():
    J = cartesian_generators(3, dtype=F64)
    torch.testing.assert_close(linear_lie_derivative(W, J, J), COMMUTATORS, rtol=0, atol=0)
    torch.testing.assert_close(linear_lie_derivative(W, J[2], J[2]), COMMUTATORS[2], rtol=0, atol=0)


def test_jvp_lie_derivative_of_a_linear_map_by_hand():
    """L_A f(x) = W A x − A W x; for x = (1, 2, 3): L_{J_x} = (0, 3, 2), L_{J_y} = (−6, 0, −2), L_{J_z} = (2, 1, 0)."""
    J = cartesian_generators(3, dtype=F64)
    x = torch.tensor([1.0, 2.0, 3.0], dtype=F64)
    out = lie_derivative(lambda z: z @ W.T, x, J, J)
    expected = torch.tensor([[0.0, 3.0, 2.0], [-6.0, 0.0, -2.0], [2.0, 1.0, 0.0]], dtype=F64)
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-14)
    torch.testing.assert_close(out, torch.einsum("kij,j->ki", COMMUTATORS, x), rtol=0, atol=1e-14)


def test_jvp_lie_derivative_of_an_invariant_output_by_hand():
    """f(x) = x₁ declared invariant: L_A f(x) = (A x)₁, i.e. 0, 3, −2 for J_x, J_y, J_z at x = (1, 2, 3)."""
    J = cartesian_generators(3, dtype=F64)
    x = torch.tensor([1.0, 2.0, 3.0], dtype=F64)
    torch.testing.assert_close(lie_derivative(lambda z: z[0], x, J), torch.tensor([0.0, 3.0, -2.0], dtype=F64))


def test_lie_derivative_on_vector_channels_by_hand():
    """Features (C, 3) = rows; f(X) = X Wᵀ row-wise: L_{J_z} f(X) row c = COMMUTATORS[2] x_c."""
    J = cartesian_generators(3, dtype=F64)
    x = torch.tensor([[1.0, 2.0, 3.0], [-1.0, 0.0, 4.0]], dtype=F64)
    out = lie_derivative(lambda z: z @ W.T, x, J[2], J[2])
    torch.testing.assert_close(out, torch.tensor([[2.0, 1.0, 0.0], [0.0, -1.0, 0.0]], dtype=F64), rtol=0, atol=1e-14)


# --- the bounds of Theorems 4.1, A.1, 4.2, A.2 and the chains (8), (13) --------------------------

G3 = torch.tensor([0.1, -0.2, 0.3], dtype=F64)  # signs do not matter: the bounds read |γ|


@pytest.mark.parametrize(
    "fn,kwargs,expected",
    [
        # Thm 4.1: ((1 + 0.3)^3 − 1) · B M² ‖x‖ = 1.197 · 2 · 9 · 2
        (projection_error_bound, {}, 1.197 * 36),
        # Thm A.1: Σ_k |γ_{k+1}| (1 + (1/k) Σ_{j≤k} |γ_j|)^k = 0.1 + 0.2·1.1 + 0.3·1.15² = 0.71675, · 36
        (projection_error_bound, {"refined": True}, 0.71675 * 36),
        # Thm 4.2, C = max(B, M) = 3: 2 · 0.3 · (3 + 0.9)² · 3 · B² ‖x‖ = 0.6 · 15.21 · 3 · 4 · 2
        (equivariance_error_bound, {}, 0.6 * 15.21 * 24),
        # verbatim C = max(B, 1) = 2: 2 · 0.3 · (3 + 0.6)² · 3 · 4 · 2
        (equivariance_error_bound, {"verbatim": True}, 0.6 * 12.96 * 24),
        # Thm A.2, C = max(B/M, 1) = 1: 2 Σ_k |γ_k| (1 + ½ Σ_{j≠k} |γ_j|)² B² M² ‖x‖
        #   = 2 (0.1·1.25² + 0.2·1.2² + 0.3·1.15²) · 4 · 9 · 2 = 2 · 0.841 · 72
        (equivariance_error_bound, {"refined": True}, 2 * 0.841 * 72),
    ],
)
def test_theorem_bounds_three_layers_by_hand(fn, kwargs, expected):
    value = fn(G3, B=2.0, M=3.0, x_norm=2.0, **kwargs)
    torch.testing.assert_close(value, torch.tensor(expected, dtype=F64), rtol=1e-12, atol=0)


def test_theorem_a2_one_layer_and_activation_chains_by_hand():
    # A.2 with L = 1: 2 |γ| B² ‖x‖
    torch.testing.assert_close(equivariance_error_bound(torch.tensor([-0.5], dtype=F64), 2.0, 3.0, 1.5,
                                                        refined=True), torch.tensor(2 * 0.5 * 4 * 1.5, dtype=F64))
    z = [1.0, 2.0, 3.0]
    # (8): B Σ_k M^{L−k} |γ_k| ‖z_{k−1}‖ = 2 (9·0.1·1 + 3·0.2·2 + 0.3·3) = 6
    torch.testing.assert_close(projection_error_bound_from_activations(G3, 2.0, 3.0, z), torch.tensor(6.0, dtype=F64))
    # (13): 2B² Σ_k |γ_k| Π_{j>k} (M + |γ_j| B) ‖z_{k−1}‖ = 8 (0.1·3.4·3.6·1 + 0.2·3.6·2 + 0.3·3) = 8 · 3.564
    torch.testing.assert_close(equivariance_error_bound_from_activations(G3, 2.0, 3.0, z),
                               torch.tensor(8 * 3.564, dtype=F64))
