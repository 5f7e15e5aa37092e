r"""A linear f_neq with a pinned scale: :math:`z \mapsto s\,(W z + b) / \|[W\;b]\|_2` on flat features."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from constrained_eq._utils.checks import check_int
from constrained_eq.homotopy import LinearBranch

__all__ = ["SpectralBranch"]


class SpectralBranch(LinearBranch):
    r"""Spectrally normalised :class:`~constrained_eq.LinearBranch` on ``(*, C, 3)`` vector sets.

    .. math::
        f_{neq}(z) = s\,\frac{W\,\mathrm{vec}(z) + b}{\|[W\;\;b]\|_2}, \qquad
        \|f_{neq}(z)\| \le s\,\|(\mathrm{vec}(z), 1)\|

    Only the product :math:`\gamma f_{neq}` matters, so with a trainable scale :math:`|\gamma|` can
    shrink while the weights grow (SPEC §5.4). Dividing by the exact spectral norm pins the scale:
    :math:`|\gamma|\,s` is then the Lipschitz constant of the branch's contribution, and ``B = s`` in
    Thms 4.1/4.2 when ``bias=False``. A bias lets the branch represent input-independent breaking
    (a constant field); then :math:`f_{neq}(0) \ne 0` and the theorems' :math:`\|f_{neq}(z)\| \le B\|z\|`
    no longer holds.

    Args:
        channels (int): Number of vectors C (flat size 3C in and out).
        bias (bool, optional): Add an input-independent term b (default: :obj:`False`).
        scale (float, optional): The pinned spectral norm s > 0 (default: :obj:`1.0`).

    Shapes:
        - **input:** ``(*, C, 3)``
        - **output:** ``(*, C, 3)``

    Examples:
        >>> branch = SpectralBranch(2)
        >>> round(torch.linalg.matrix_norm(branch.normalized_weight()[0], 2).item(), 5)
        1.0
    """

    def __init__(self, channels: int, *, bias: bool = False, scale: float = 1.0) -> None:
        check_int(channels, "channels")
        if not float(scale) > 0:
            raise ValueError(f"Expected 'scale' to be a number > 0 (got {scale!r})")
        super().__init__(3 * channels, 3 * channels, bias=bias)
        self.channels = channels
        self.scale = float(scale)

    def normalized_weight(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Return ``(s W / σ, s b / σ)`` with σ the spectral norm of ``[W b]``."""
        w, b = self.linear.weight, self.linear.bias
        augmented = w if b is None else torch.cat([w, b.unsqueeze(1)], dim=1)
        factor = self.scale / torch.linalg.matrix_norm(augmented, 2).clamp_min(1e-12)
        return w * factor, None if b is None else b * factor

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        flat = z.flatten(-2)
        if self.recording:
            self.last_input = flat.detach()
        w, b = self.normalized_weight()
        return F.linear(flat, w, b).reshape(z.shape)

    def extra_repr(self) -> str:
        return f"channels={self.channels}, bias={self.linear.bias is not None}, scale={self.scale}"
