"""ACE's bounds hold on random bias-free networks with known Lipschitz constants (SPEC §3.4)."""

import torch
from hypothesis import given
from hypothesis import strategies as st
from torch import nn

from constrained_eq.homotopy import HomotopicLayer, project
from constrained_eq.models import VNLinear
from constrained_eq.symmetry import (
    equivariance_error_bound,
    equivariance_error_bound_from_activations,
    projection_error_bound,
    projection_error_bound_from_activations,
)

SLACK = 1 + 1e-9


class DeepSets(nn.Module):
    """E(X) = σ(X A + P X B'), P = 11ᵀ/n; Lipschitz max(‖A‖₂, ‖A + B'‖₂)."""

    def __init__(self, a, b, relu):
        super().__init__()
        self.a, self.b, self.relu = a, b, relu

    def forward(self, x):
        out = x @ self.a + x.mean(-2, keepdim=True) @ self.b
        return out.relu() if self.relu else out


class Dense(nn.Module):
    """N(z) = unvec(V vec(z)) (optionally V2 ReLU(V1 vec z)); bias-free."""

    def __init__(self, mats, shape_out):
        super().__init__()
        self.mats, self.shape_out = mats, shape_out

    def forward(self, x):
        z = x.flatten(-2)
        for i, m in enumerate(self.mats):
            z = z @ m.T
            if i < len(self.mats) - 1:
                z = z.relu()
        return z.unflatten(-1, self.shape_out)


def _scaled(gen, rows, cols, norm):
    w = torch.randn(rows, cols, generator=gen, dtype=torch.float64)
    return w * norm / torch.linalg.matrix_norm(w, ord=2)


def _network(seed, kind, L, gammas, scale, relu, mlp):
    gen = torch.Generator().manual_seed(seed)
    n, widths = 4, [int(w) for w in torch.randint(1, 4, (L + 1,), generator=gen)]
    layers, lips, bneqs = [], [], []
    for i in range(L):
        d_in, d_out = widths[i], widths[i + 1]
        if kind == "sn":
            a, b = _scaled(gen, d_in, d_out, scale), _scaled(gen, d_in, d_out, scale)
            eq = DeepSets(a, b, relu)
            lip_eq = max(torch.linalg.matrix_norm(a, ord=2), torch.linalg.matrix_norm(a + b, ord=2)).item()
            shape_in, shape_out = (n, d_in), (n, d_out)
        else:
            eq = VNLinear(d_in, d_out).double()
            with torch.no_grad():
                eq.weight.copy_(_scaled(gen, d_out, d_in, scale))
            lip_eq = scale
            shape_in, shape_out = (d_in, 3), (d_out, 3)
        f_in, f_out = shape_in[0] * shape_in[1], shape_out[0] * shape_out[1]
        mats = [_scaled(gen, f_in, f_in, scale), _scaled(gen, f_out, f_in, scale)] if mlp else [_scaled(gen, f_out, f_in, scale)]
        b_neq = float(torch.prod(torch.tensor([torch.linalg.matrix_norm(m, ord=2).item() for m in mats])))
        layers.append(HomotopicLayer(eq, Dense(mats, shape_out), gamma_init=gammas[i]))
        lips.append(max(lip_eq, b_neq))
        bneqs.append(b_neq)
    x = torch.randn(1, n if kind == "sn" else widths[0], widths[0] if kind == "sn" else 3, generator=gen, dtype=torch.float64)
    if kind == "sn":
        perm = torch.randperm(n, generator=gen)
        act = lambda z: z[..., perm, :]  # noqa: E731
    else:
        from constrained_eq.symmetry import SO

        r = SO(3).sample(1, generator=gen, dtype=torch.float64)[0]
        act = lambda z: z @ r.T  # noqa: E731
    return nn.Sequential(*layers), x, act, max(lips), max(bneqs)


networks = st.tuples(
    st.integers(0, 2**31 - 1),
    st.sampled_from(["sn", "vn"]),
    st.integers(1, 5),
    st.lists(st.floats(-1.5, 1.5), min_size=5, max_size=5),
    st.floats(0.3, 2.5),
    st.booleans(),
    st.booleans(),
)


def _errors(model, x, act):
    norms, z = [], x
    for layer in model:
        norms.append(z.norm())
        z = layer(z)
    proj = (model(x) - project(model)(x)).norm()
    equiv = (act(model(x)) - model(act(x))).norm()
    return proj, equiv, torch.stack(norms)


@given(networks)
def test_measured_errors_never_exceed_the_bounds(params):
    seed, kind, L, gs, scale, relu, mlp = params
    gamma = torch.tensor(gs[:L], dtype=torch.float64)
    model, x, act, M, b_neq = _network(seed, kind, L, gs[:L], scale, relu, mlp)
    with torch.no_grad():
        proj, equiv, z_norms = _errors(model, x, act)
    x_norm = x.norm()
    B = max(b_neq, 1.0)  # the isometric action bounds ‖ρ(g)‖ by 1
    assert proj <= SLACK * projection_error_bound(gamma, b_neq, M, x_norm) + 1e-12
    assert proj <= SLACK * projection_error_bound(gamma, b_neq, M, x_norm, refined=True) + 1e-12
    assert proj <= SLACK * projection_error_bound_from_activations(gamma, b_neq, M, z_norms) + 1e-12
    assert equiv <= SLACK * equivariance_error_bound(gamma, B, M, x_norm) + 1e-12
    assert equiv <= SLACK * equivariance_error_bound(gamma, B, M, x_norm, refined=True) + 1e-12
    assert equiv <= SLACK * equivariance_error_bound_from_activations(gamma, B, M, z_norms) + 1e-12


@given(networks)
def test_verbatim_theorem_4_2_when_m_at_most_one(params):
    seed, kind, L, gs, scale, relu, mlp = params
    # spectral norms ≤ 1/2: DeepSets Lipschitz ≤ ‖A‖ + ‖B'‖ ≤ 1, MLP branch ≤ 1/4
    model, x, act, M, b_neq = _network(seed, kind, L, gs[:L], min(scale, 1.0) / 2, relu, mlp)
    assert M <= 1 + 1e-12
    with torch.no_grad():
        _, equiv, _ = _errors(model, x, act)
    gamma = torch.tensor(gs[:L], dtype=torch.float64)
    bound = equivariance_error_bound(gamma, max(b_neq, 1.0), M, x.norm(), verbatim=True)
    assert equiv <= SLACK * bound + 1e-12


@given(networks)
def test_projection_is_exactly_equivariant(params):
    seed, kind, L, gs, scale, relu, mlp = params
    model, x, act, _, _ = _network(seed, kind, L, gs[:L], scale, relu, mlp)
    strict = project(model)
    with torch.no_grad():
        assert (act(strict(x)) - strict(act(x))).norm() <= 1e-12 * max(1.0, x.norm().item()) * 10 ** L


def test_bounds_by_hand():
    g = torch.tensor([0.5, 0.25], dtype=torch.float64)
    # Thm 4.1: ((1.5)^2 - 1) B M ‖x‖ with B=2, M=3, ‖x‖=1
    assert torch.isclose(projection_error_bound(g, 2.0, 3.0, 1.0), torch.tensor(1.25 * 6.0, dtype=torch.float64))
    # Thm A.1: (|γ1| + |γ2|(1+|γ1|)) B M = (0.5 + 0.375) * 6
    assert torch.isclose(projection_error_bound(g, 2.0, 3.0, 1.0, refined=True), torch.tensor(5.25, dtype=torch.float64))
    # Thm 4.2 with C = max(B, M) = 3: 2·0.5·(3 + 1.5)·2·4 = 36; verbatim C = 2: 2·0.5·(3+1)·2·4 = 32
    assert torch.isclose(equivariance_error_bound(g, 2.0, 3.0, 1.0), torch.tensor(36.0, dtype=torch.float64))
    assert torch.isclose(equivariance_error_bound(g, 2.0, 3.0, 1.0, verbatim=True), torch.tensor(32.0, dtype=torch.float64))
