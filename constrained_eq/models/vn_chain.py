r"""A relaxable chain of Vector-Neuron layers, the student for :mod:`constrained_eq.data.broken_chain`."""

from __future__ import annotations

import math

import torch
from torch import nn

from constrained_eq.homotopy import HomotopicLayer, homotopic_layers
from constrained_eq.models.spectral_branch import SpectralBranch
from constrained_eq.models.vn_linear import VNLinear

__all__ = ["VNChain"]


class _VNGate(nn.Module):
    r"""Equivariant layer :math:`z \mapsto \phi(W z)`, :math:`\phi(v) = v/\sqrt{1+\|v\|^2}` per vector."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.linear = VNLinear(channels, channels)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        v = self.linear(z)
        return v * torch.rsqrt(1 + v.pow(2).sum(-1, keepdim=True))


class VNChain(nn.Module):
    r"""``L`` homotopic layers :math:`z_i = \phi(W_i z_{i-1}) + \gamma_i\, f_{neq,i}(z_{i-1})`.

    f_eq is SO(3)-equivariant (Vector-Neuron map and a norm nonlinearity, Lipschitz constant
    :math:`M_i = \|W_i\|_2`); f_neq is a :class:`SpectralBranch` of pinned scale, so :math:`|\gamma_i|`
    measures how much layer ``i`` breaks the symmetry (SPEC §5.4). ``γ = 0`` is exactly equivariant.

    Args:
        channels (int): Number of vectors C per sample.
        layers (int): Depth L ≥ 1.
        bias (bool, optional): Give each branch an input-independent term, needed to represent a
            constant-field breaking (default: :obj:`False`).
        gamma_init (float, optional): Initial γ (default: :obj:`1.0`, as ACE).
        branch_scale (float, optional): Pinned spectral norm of every f_neq (default: :obj:`1.0`).

    Shapes:
        - **input:** ``(B, C, 3)``
        - **output:** ``(B, C, 3)``

    Examples:
        >>> net = VNChain(4, 3)
        >>> net(torch.randn(2, 4, 3)).shape, len(net.gammas())
        (torch.Size([2, 4, 3]), 3)
    """

    def __init__(
        self, channels: int, layers: int, *, bias: bool = False, gamma_init: float = 1.0, branch_scale: float = 1.0
    ) -> None:
        super().__init__()
        if isinstance(layers, bool) or not isinstance(layers, int) or layers < 1:
            raise ValueError(f"Expected 'layers' to be an integer ≥ 1 (got {layers!r})")
        self.channels = channels
        self.branch_scale = float(branch_scale)
        self.blocks = nn.ModuleList(
            HomotopicLayer(_VNGate(channels), SpectralBranch(channels, bias=bias, scale=branch_scale), gamma_init)
            for _ in range(layers)
        )
        for block in self.blocks:
            nn.init.normal_(block.eq.linear.weight, std=1.5 / math.sqrt(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = x
        for block in self.blocks:
            z = block(z)
        return z

    def gammas(self) -> torch.Tensor:
        """The detached vector (γ_1, …, γ_L)."""
        return torch.stack([layer.gamma.detach() for layer in homotopic_layers(self)])

    def lipschitz_constants(self) -> torch.Tensor:
        r"""Per-layer :math:`M_i = \|W_i\|_2`, the Lipschitz constants of the f_eq (φ is 1-Lipschitz)."""
        return torch.stack([torch.linalg.matrix_norm(b.eq.linear.weight.detach(), 2) for b in self.blocks])
