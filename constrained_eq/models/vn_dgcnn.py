r"""Vector-Neuron DGCNN (Deng et al., 2021) for SO(3)-invariant classification, relaxable per CR/ACE."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from constrained_eq.models._vn import VNClassifier, VNInvariant, VNLinearLeakyReLU, graph_feature

__all__ = ["VNDGCNN"]


class VNDGCNN(VNClassifier):
    r"""VN-DGCNN classifier (Deng et al. 2021; ACE §5.3 and CR §5 relaxations).

    Each EdgeConv layer builds a kNN graph on the current vector features (plain-torch ``cdist`` +
    ``topk``; distances of flattened ``(C, 3)`` features are rotation invariant) and computes

    .. math::
        X^{(l+1)}_i = \operatorname{mean}_{j \in \mathrm{kNN}_l(i)}
            \sigma\big(W_l\,[X^{(l)}_j - X^{(l)}_i,\ X^{(l)}_i\ (,\ x_j \times x_i \text{ at } l = 0)]\big),

    then :math:`E_i = \sigma(W_e [X^{(1)}_i, \dots, X^{(L)}_i])` (shared VN-LeakyReLU direction),
    invariant coordinates :math:`Z_i = [E_i, \bar E] F_i^\top` in an equivariant frame, and
    :math:`y = \mathrm{MLP}([\max_i Z_i, \operatorname{mean}_i Z_i])`.
    With ``relaxed``, every VN linear map (feature and VN-LeakyReLU direction maps, the frame) becomes
    :math:`W_e X + \gamma\,\mathrm{unvec}(W\,\mathrm{vec}(X))` in a
    :class:`~constrained_eq.homotopy.HomotopicLayer`; with every ``γ = 0`` the logits are rotation
    invariant. The reference widths are ``(21, 21, 42, 85)`` edge channels and ``341`` embedding
    channels; defaults here are reduced.

    Args:
        num_classes (int): Number of classes.
        channels (sequence of int, optional): Vector channels of the EdgeConv layers
            (default: :obj:`(8, 8, 16)`).
        emb_channels (int, optional): Vector channels of the embedding layer (default: :obj:`32`).
        k (int, optional): Neighbours per point (default: :obj:`8`).
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
        channels: Sequence[int] = (8, 8, 16),
        emb_channels: int = 32,
        k: int = 8,
        hidden: int = 64,
        relaxed: bool = True,
        gamma_init: float = 1.0,
        *,
        neq_init_std: float | None = None,
    ) -> None:
        super().__init__(num_classes, channels, k, hidden, relaxed, gamma_init, neq_init_std, min_channels=1,
                         emb_channels=emb_channels)
        channels, opts = self.channels, self.vn_options
        ins = (3,) + tuple(2 * c for c in channels[:-1])
        self.edge_convs = nn.ModuleList(
            VNLinearLeakyReLU(c_in, c_out, **opts) for c_in, c_out in zip(ins, channels, strict=True)
        )
        self.embed = VNLinearLeakyReLU(sum(channels), emb_channels, share_nonlinearity=True, **opts)
        self.invariant = VNInvariant(2 * emb_channels, **opts)
        self.head = nn.Sequential(
            nn.Linear(2 * 2 * emb_channels * 3, hidden), nn.LeakyReLU(0.2), nn.Linear(hidden, num_classes)
        )
        self.reset_parameters()

    def logits(self, points: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, num_classes)`` of points ``(B, N, 3)``."""
        x = points[:, :, None, :]  # (B, N, 1, 3)
        features = []
        for index, conv in enumerate(self.edge_convs):
            x = conv(graph_feature(x, self.k, cross=index == 0)).mean(2)  # (B, N, C_l, 3)
            features.append(x)
        e = self.embed(torch.cat(features, dim=-2))  # (B, N, E, 3)
        z = self.invariant(torch.cat([e, e.mean(1, keepdim=True).expand_as(e)], dim=-2)).flatten(-2)  # (B, N, 6E)
        return self.head(torch.cat([z.max(1).values, z.mean(1)], dim=-1))
