r"""Vector-Neuron PointNet (Deng et al., 2021) for SO(3)-invariant classification, relaxable per CR."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from constrained_eq.models._vn import VNClassifier, VNInvariant, VNLinearLeakyReLU, VNMaxPool, graph_feature, vn_linear

__all__ = ["VNPointNet"]


class VNPointNet(VNClassifier):
    r"""VN-PointNet classifier (Deng et al. 2021, §4; CR §5 relaxation).

    .. math::
        X^{(0)}_i = \operatorname{mean}_{j \in \mathrm{kNN}(i)}
            \sigma\big(W_0 [x_j - x_i, x_i, x_j \times x_i]\big),\quad
        X^{(l+1)}_i = \sigma\big(W_{l+1} [X^{(l)}_i, \bar X^{(l)}]\big),\quad
        y = \mathrm{MLP}\big([G, \bar X^{(L)}]\, F^\top\big)

    with :math:`\sigma` the VN-LeakyReLU, :math:`\bar X` the mean over points, :math:`G` the VN max
    pooling of :math:`X^{(L)}` over points and :math:`F` an equivariant frame (VN invariant head).
    With ``relaxed``, every VN linear map — feature maps, VN-LeakyReLU direction maps, the pooling
    direction and the frame — becomes :math:`W_e X + \gamma\,\mathrm{unvec}(W\,\mathrm{vec}(X))`
    (CR eq. 2) in a :class:`~constrained_eq.homotopy.HomotopicLayer`; with every ``γ = 0`` the
    logits are rotation invariant, and :func:`~constrained_eq.project` gives the ``relaxed=False``
    architecture. The reference uses widths ``(21, 21, 42, 341)`` (≈ 64/3 … 1024/3); the default
    here is reduced.

    Args:
        num_classes (int): Number of classes.
        channels (sequence of int, optional): Vector channels per layer, the first one after the
            kNN edge layer (default: :obj:`(8, 16, 32)`).
        k (int, optional): Neighbours of the first (edge) layer (default: :obj:`8`).
        hidden (int, optional): Hidden size of the invariant MLP head (default: :obj:`64`).
        relaxed (bool, optional): Add the γ-scaled dense branches (default: :obj:`True`).
        gamma_init (float, optional): Initial γ (default: :obj:`1.0`).
        neq_init_std (float, optional): Branch weight init std (CR: ``1e-4``) (default: :obj:`None`).

    Shapes:
        - **input:** points ``(B, N, 3)`` or ``(N, 3)``
        - **output:** logits ``(B, num_classes)`` (or ``(num_classes,)``)
    """

    def __init__(
        self,
        num_classes: int,
        channels: Sequence[int] = (8, 16, 32),
        k: int = 8,
        hidden: int = 64,
        relaxed: bool = True,
        gamma_init: float = 1.0,
        *,
        neq_init_std: float | None = None,
    ) -> None:
        super().__init__(num_classes, channels, k, hidden, relaxed, gamma_init, neq_init_std, min_channels=2)
        channels, opts = self.channels, self.vn_options
        self.conv_pos = VNLinearLeakyReLU(3, channels[0], **opts)
        convs = [VNLinearLeakyReLU(channels[0], channels[0], **opts)]
        for c_in, c_out in zip(channels[:-2], channels[1:-1], strict=True):
            convs.append(VNLinearLeakyReLU(2 * c_in, c_out, **opts))
        self.convs = nn.ModuleList(convs)
        self.conv_out = vn_linear(2 * channels[-2], channels[-1], relaxed, gamma_init, neq_init_std)
        self.pool = VNMaxPool(channels[-1], **opts)
        self.invariant = VNInvariant(2 * channels[-1], **opts)
        self.head = nn.Sequential(nn.Linear(2 * channels[-1] * 3, hidden), nn.ReLU(), nn.Linear(hidden, num_classes))
        self.reset_parameters()

    def logits(self, points: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, num_classes)`` of points ``(B, N, 3)``."""
        x = points[:, :, None, :]  # (B, N, 1, 3)
        x = self.conv_pos(graph_feature(x, self.k, cross=True)).mean(2)  # (B, N, C0, 3)
        x = self.convs[0](x)
        for conv in self.convs[1:]:
            x = conv(torch.cat([x, x.mean(1, keepdim=True).expand_as(x)], dim=-2))
        x = self.conv_out(torch.cat([x, x.mean(1, keepdim=True).expand_as(x)], dim=-2))  # (B, N, C, 3)
        g = self.pool(x)  # (B, C, 3)
        z = self.invariant(torch.cat([g, x.mean(1)], dim=-2))  # (B, 2C, 3) invariant
        return self.head(z.flatten(-2))
