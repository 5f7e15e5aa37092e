r"""Vector-Neuron linear layer (Deng et al., 2021): :math:`X \mapsto W X` on ``X ∈ R^{C×3}``."""

from __future__ import annotations

import math

import torch
from torch import nn

from constrained_eq.symmetry.reps import VectorRep

__all__ = ["VNLinear"]


class VNLinear(nn.Module):
    r"""SO(3)/O(3)-equivariant linear map on channels of 3-vectors, :math:`X' = W X`.

    Rotating every vector (:math:`X \mapsto X Q^\top`) commutes with mixing channels, so the
    layer is equivariant for any :math:`W \in \mathbb{R}^{C_{out} \times C_{in}}`; it has no bias.
    Its Lipschitz constant is :math:`\|W\|_2`.

    Args:
        in_channels (int): Number of input vectors C_in.
        out_channels (int): Number of output vectors C_out.

    Shapes:
        - **input:** ``(*, in_channels, 3)``
        - **output:** ``(*, out_channels, 3)``

    Examples:
        >>> VNLinear(4, 2)(torch.zeros(5, 4, 3)).shape
        torch.Size([5, 2, 3])
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.uniform_(self.weight, -1 / math.sqrt(self.in_channels), 1 / math.sqrt(self.in_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.einsum("oi,...id->...od", self.weight, x)

    def relaxation_spec(self) -> tuple[list[tuple[int, ...]], tuple[int, ...], VectorRep, VectorRep]:
        """How :func:`constrained_eq.relax` builds f_neq here: input tails, output tail, ρ_in, ρ_out."""
        c_in, c_out = self.in_channels, self.out_channels
        return [(c_in, 3)], (c_out, 3), VectorRep(c_in), VectorRep(c_out)

    def extra_repr(self) -> str:
        return f"{self.in_channels}, {self.out_channels}"
