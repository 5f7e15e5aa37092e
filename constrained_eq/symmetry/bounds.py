r"""ACE's error bounds (Thm 4.1, A.1, 4.2, A.2 and the data-dependent chains (8), (13)), SPEC §3.

Notation: γ = (γ_1..γ_L), γ̄ = max|γ_i|; every f_eq and f_neq is M-Lipschitz, ‖f_neq(z)‖ ≤ B‖z‖,
f_eq(0) = 0. For the equivariance bounds B must also bound the group action (B ≥ 1 for isometric
actions: use ``B = max(B_neq, 1)``).
"""

from __future__ import annotations

import torch

__all__ = [
    "projection_error_bound",
    "equivariance_error_bound",
    "projection_error_bound_from_activations",
    "equivariance_error_bound_from_activations",
]


def _gamma(gamma: torch.Tensor | list[float]) -> torch.Tensor:
    g = torch.as_tensor(gamma)
    if g.dim() != 1 or g.numel() == 0:
        raise ValueError(f"Expected 'gamma' to be a non-empty 1-D tensor of shape (L,) (got shape {tuple(g.shape)})")
    return g.abs()


def projection_error_bound(gamma, B: float, M: float, x_norm, *, refined: bool = False) -> torch.Tensor:
    r"""Bound on :math:`\|f_{\theta,\gamma}(x) - f_{\theta,0}(x)\|`.

    Thm 4.1: :math:`((1+\bar\gamma)^L - 1)\, B M^{L-1} \|x\|`.
    Thm A.1 (``refined=True``): :math:`\sum_{k=0}^{L-1} |\gamma_{k+1}| (1 + \tfrac1k \sum_{j\le k} |\gamma_j|)^k
    \, B M^{L-1}\|x\|` (the ``k = 0`` term is :math:`|\gamma_1|`).

    Examples:
        >>> projection_error_bound(torch.tensor([0.5, 0.5]), B=1.0, M=1.0, x_norm=1.0)
        tensor(1.2500)
    """
    g = _gamma(gamma)
    L = g.numel()
    if refined:
        prefix = torch.cat([g.new_zeros(1), torch.cumsum(g, 0)[:-1]])
        k = torch.arange(L, dtype=g.dtype, device=g.device)
        base = 1 + prefix / k.clamp(min=1)
        factor = (g * base**k).sum()
    else:
        factor = (1 + g.max()) ** L - 1
    return factor * B * M ** (L - 1) * x_norm


def equivariance_error_bound(
    gamma, B: float, M: float, x_norm, *, refined: bool = False, verbatim: bool = False
) -> torch.Tensor:
    r"""Bound on :math:`\|\rho_Y(g) f_{\theta,\gamma}(x) - f_{\theta,\gamma}(\rho_X(g)x)\|`.

    Thm 4.2: :math:`2\bar\gamma (M + C\bar\gamma)^{L-1} L B^2 \|x\|` with :math:`C = \max(B, M)`
    (SPEC §3 erratum; proven). ``verbatim=True`` uses the printed :math:`C = \max(B, 1)`, proven
    only when :math:`M \le \max(B, 1)`.
    Thm A.2 (``refined=True``): :math:`2\sum_k |\gamma_k| (1 + \tfrac{C}{L-1}\sum_{j\ne k}|\gamma_j|)^{L-1}
    B^2 M^{L-1}\|x\|`, :math:`C = \max(B/M, 1)`.

    Examples:
        >>> equivariance_error_bound(torch.tensor([0.5]), B=1.0, M=1.0, x_norm=1.0)
        tensor(1.)
    """
    g = _gamma(gamma)
    L = g.numel()
    if refined:
        if M <= 0:
            raise ValueError(f"Expected 'M' to be > 0 for Thm A.2 (got {M!r})")
        if L == 1:
            return 2 * g[0] * B**2 * x_norm
        C = max(B / M, 1.0)
        others = g.sum() - g
        return 2 * (g * (1 + C / (L - 1) * others) ** (L - 1)).sum() * B**2 * M ** (L - 1) * x_norm
    C = max(B, 1.0) if verbatim else max(B, M)
    gbar = g.max()
    return 2 * gbar * (M + C * gbar) ** (L - 1) * L * B**2 * x_norm


def projection_error_bound_from_activations(gamma, B: float, M: float, z_norms) -> torch.Tensor:
    r"""Chain (8): :math:`B \sum_{k=1}^{L} M^{L-k} |\gamma_k| \|z_{k-1}\|` with the relaxed activations.

    Args:
        gamma: The L homotopy coefficients γ.
        B: Lipschitz constant of the non-equivariant branches.
        M: Lipschitz constant of the layers.
        z_norms: :math:`(\|z_0\|, \dots, \|z_{L-1}\|)`, the norms of the inputs of the L layers.
    """
    g = _gamma(gamma)
    z = torch.as_tensor(z_norms, dtype=g.dtype)
    L = g.numel()
    powers = M ** torch.arange(L - 1, -1, -1, dtype=g.dtype)
    return B * (powers * g * z).sum()


def equivariance_error_bound_from_activations(gamma, B: float, M: float, z_norms) -> torch.Tensor:
    r"""Chain (13): :math:`2B^2 \sum_k |\gamma_k| \prod_{j=k+1}^{L} (M + |\gamma_j| B)\, \|z_{k-1}\|`."""
    g = _gamma(gamma)
    z = torch.as_tensor(z_norms, dtype=g.dtype)
    factors = M + g * B
    # suffix products Π_{j>k} factors_j
    suffix = torch.cat([torch.flip(torch.cumprod(torch.flip(factors[1:], [0]), 0), [0]), factors.new_ones(1)])
    return 2 * B**2 * (g * suffix * z).sum()
