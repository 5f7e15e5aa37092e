r"""A synthetic family with SO(3) symmetry broken at a chosen depth (the right answer is known).

Inputs are sets of ``C`` vectors, :math:`x = \phi(a\,\xi) \in \mathbb{R}^{C\times 3}` with
:math:`\xi \sim \mathcal{N}(0, I)` and ``a`` the teacher's gain, so inputs and hidden features
have the same range (every vector shorter than 1; otherwise the first layer's branch, acting on
larger vectors, buys more loss per unit of γ and attracts the slack whatever the depth). The target
is produced by a fixed deep *teacher* with ``L`` layers

.. math::
    z_0 = x, \qquad z_i = \phi(W_i z_{i-1}) + [i = k]\; \varepsilon\, N(z_{i-1}), \qquad y = z_L,

where :math:`W_i \in \mathbb{R}^{C\times C}` mixes channels (Vector-Neuron linear map),
:math:`\phi(v) = v / \sqrt{1 + \|v\|^2}` acts on each 3-vector by its norm (1-Lipschitz,
:math:`\phi(0) = 0`), and the breaking term :math:`N` at layer ``k`` (0-based ``depth``) is one of

* ``"anisotropic"``: :math:`N(z) = z\,\mathrm{diag}(1, 0, 0)` — a stretch along the x axis; linear,
  :math:`\|N\|_2 = 1`, :math:`N(0) = 0`, so a bias-free linear branch represents it exactly and
  Thm 4.2 applies;
* ``"field"``: :math:`N(z) = b`, a constant unit-norm vector field (every channel along
  :math:`e_z/\sqrt{C}`); input-independent, so only a branch *with a bias* represents it.

Every :math:`\phi(W_i\,\cdot)` commutes with rotations :math:`X \mapsto XQ^\top`, so ``eps = 0`` gives
exactly SO(3)-equivariant data. Between layers the nonlinearity makes the location of the breaking
identifiable: a branch at layer ``j ≠ k`` can only approximate it.

This module does not import the engine or training code.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

__all__ = ["BREAKINGS", "BrokenChainTeacher", "BrokenChainData", "make_broken_chain", "vector_gate"]

BREAKINGS = ("anisotropic", "field")


def vector_gate(v: torch.Tensor) -> torch.Tensor:
    r"""The norm nonlinearity :math:`\phi(v) = v / \sqrt{1 + \|v\|^2}` on the last axis (1-Lipschitz)."""
    return v * torch.rsqrt(1 + v.pow(2).sum(-1, keepdim=True))


def _check_int(value: object, field_name: str, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"Expected '{field_name}' to be an integer ≥ {low} (got {value!r})")
    return value


class BrokenChainTeacher(nn.Module):
    r"""The fixed teacher :math:`z_i = \phi(W_i z_{i-1}) + [i = k]\,\varepsilon N(z_{i-1})`.

    Args:
        channels (int): Number of vectors C per sample.
        layers (int): Depth L ≥ 1.
        depth (int): Index k of the layer that breaks the symmetry, ``0 ≤ k < L``.
        eps (float): Strength ε ≥ 0 of the breaking (``0``: exactly SO(3)-equivariant).
        breaking (str, optional): ``"anisotropic"`` or ``"field"`` (default: :obj:`"anisotropic"`).
        gain (float, optional): Spectral norm of every :math:`W_i` (default: :obj:`2.0`, so that
            :math:`\phi` works in its nonlinear range).
        seed (int, optional): Seed of the teacher's weights (default: :obj:`0`).

    Shapes:
        - **input:** ``(B, C, 3)``
        - **output:** ``(B, C, 3)``

    Examples:
        >>> teacher = BrokenChainTeacher(4, 3, depth=1, eps=0.0)
        >>> teacher(torch.zeros(2, 4, 3)).abs().max().item()
        0.0
    """

    def __init__(
        self,
        channels: int,
        layers: int,
        depth: int,
        eps: float,
        breaking: str = "anisotropic",
        *,
        gain: float = 2.0,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.channels = _check_int(channels, "channels", 1)
        self.layers = _check_int(layers, "layers", 1)
        if isinstance(depth, bool) or not isinstance(depth, int) or not 0 <= depth < layers:
            raise ValueError(f"Expected 'depth' to be an integer in [0, {layers - 1}] (got {depth!r})")
        if breaking not in BREAKINGS:
            raise ValueError(f"Expected 'breaking' to be one of {', '.join(map(repr, BREAKINGS))} (got {breaking!r})")
        if not float(eps) >= 0:
            raise ValueError(f"Expected 'eps' to be a number ≥ 0 (got {eps!r})")
        self.depth, self.eps, self.breaking = depth, float(eps), breaking
        g = torch.Generator().manual_seed(seed)
        weights = []
        for _ in range(layers):
            w = torch.randn(channels, channels, generator=g, dtype=torch.float64)
            weights.append(gain * w / torch.linalg.matrix_norm(w, 2))
        self.register_buffer("weights", torch.stack(weights).float())
        field = torch.zeros(channels, 3)
        field[:, 2] = 1 / channels**0.5
        self.register_buffer("field", field)
        self.register_buffer("stretch", torch.tensor([1.0, 0.0, 0.0]))

    def breaking_term(self, z: torch.Tensor) -> torch.Tensor:
        """The unscaled non-equivariant term N(z) (shape of ``z``)."""
        if self.breaking == "anisotropic":
            return z * self.stretch
        return self.field.expand_as(z)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = x
        for i in range(self.layers):
            out = vector_gate(torch.einsum("oi,...id->...od", self.weights[i], z))
            if i == self.depth and self.eps:
                out = out + self.eps * self.breaking_term(z)
            z = out
        return z

    def extra_repr(self) -> str:
        return (f"channels={self.channels}, layers={self.layers}, depth={self.depth}, eps={self.eps}, "
                f"breaking={self.breaking!r}")


class BrokenChainData(NamedTuple):
    """Train/validation tensors and the teacher that produced them."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    teacher: BrokenChainTeacher


def make_broken_chain(
    n_train: int = 512,
    n_val: int = 256,
    *,
    channels: int = 4,
    layers: int = 3,
    depth: int = 1,
    eps: float = 0.5,
    breaking: str = "anisotropic",
    gain: float = 2.0,
    seed: int = 0,
) -> BrokenChainData:
    r"""Sample :math:`x = \phi(a\,\xi)`, :math:`\xi \sim \mathcal{N}(0, I)^{C\times 3}`, and label it.

    The labels come from :class:`BrokenChainTeacher`.

    The teacher's weights depend on ``seed`` only, the inputs on ``seed`` too (a second stream),
    so two calls with the same arguments return identical tensors.

    Examples:
        >>> data = make_broken_chain(8, 4, eps=0.0)
        >>> data.x_train.shape, data.y_val.shape
        (torch.Size([8, 4, 3]), torch.Size([4, 4, 3]))
    """
    _check_int(n_train, "n_train", 1)
    _check_int(n_val, "n_val", 1)
    teacher = BrokenChainTeacher(channels, layers, depth, eps, breaking, gain=gain, seed=seed)
    g = torch.Generator().manual_seed(seed + 1_000_003)
    x = vector_gate(gain * torch.randn(n_train + n_val, channels, 3, generator=g))
    with torch.no_grad():
        y = teacher(x)
    return BrokenChainData(x[:n_train], y[:n_train], x[n_train:], y[n_train:], teacher)
