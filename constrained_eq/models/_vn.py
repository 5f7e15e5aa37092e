r"""Vector-Neuron building blocks (Deng et al., 2021) with CR's dense relaxation (Otto et al., 2024).

Features are channels of 3-vectors, ``X ∈ R^{C×3}``, acted on by rotations as ``X ↦ X Qᵀ``. Every
linear map here may be relaxed as :math:`X \mapsto W_e X + \gamma\,\mathrm{unvec}(W\,\mathrm{vec}(X))`
with ``W`` dense over all ``3C`` entries (CR eq. 2), a :class:`~constrained_eq.homotopy.LinearBranch`
that carries :class:`~constrained_eq.symmetry.VectorRep` so CR's Lie penalty is analytic.
These are private helpers of :class:`~constrained_eq.models.VNPointNet` and :class:`~constrained_eq.models.VNDGCNN`,
whose shared part is :class:`VNClassifier`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from constrained_eq.homotopy import HomotopicLayer, LinearBranch
from constrained_eq.models._options import check_positive_ints
from constrained_eq.models.vn_linear import VNLinear
from constrained_eq.symmetry.reps import VectorRep

EPS = 1e-6


class VNBranch(nn.Module):
    r"""Unconstrained f_neq of a VN linear map, :math:`X \mapsto \mathrm{unvec}(W\,\mathrm{vec}(X))` (CR eq. 2).

    Shapes:
        - **input:** ``(*, in_channels, 3)``
        - **output:** ``(*, out_channels, 3)``
    """

    def __init__(self, in_channels: int, out_channels: int, init_std: float | None = None) -> None:
        super().__init__()
        self.out_channels = out_channels
        self.net = LinearBranch(
            3 * in_channels, 3 * out_channels, VectorRep(in_channels), VectorRep(out_channels), init_std=init_std
        )

    def reset_parameters(self) -> None:
        """Re-initialise the parameters."""
        self.net.reset_parameters()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the branch; see the class docstring for shapes."""
        return self.net(x.flatten(-2)).unflatten(-1, (self.out_channels, 3))


def vn_linear(
    in_channels: int, out_channels: int, relaxed: bool, gamma_init: float = 1.0, init_std: float | None = None
) -> nn.Module:
    """A :class:`VNLinear`, or with ``relaxed`` a :class:`HomotopicLayer` of it and a :class:`VNBranch`."""
    eq = VNLinear(in_channels, out_channels)
    if not relaxed:
        return eq
    return HomotopicLayer(eq, VNBranch(in_channels, out_channels, init_std), gamma_init)


def reset_vn(module: nn.Module) -> None:
    """Re-initialise every VN linear map and branch inside ``module``.

    Without VN batch norm (not used here, so that outputs do not depend on the batch), VN maps start
    from He-scaled weights ``N(0, 2 / C_in)`` so that vector norms neither vanish nor explode with depth.
    """
    for sub in module.modules():
        if isinstance(sub, VNLinear):
            nn.init.normal_(sub.weight, std=(2.0 / sub.in_channels) ** 0.5)
        elif isinstance(sub, LinearBranch | nn.Linear):
            sub.reset_parameters()


class VNLeakyReLU(nn.Module):
    r"""VN-LeakyReLU: :math:`q - (1-\alpha)\,\mathbb{1}[\langle q,k\rangle<0]\,\frac{\langle q,k\rangle}{\|k\|^2}k`.

    The direction ``k = U X`` is a (relaxable) VN linear map of the layer input ``X``; ``q`` is the
    feature it acts on. With ``share_nonlinearity`` one direction serves all channels.

    Shapes:
        - **input:** ``q (*, C_out, 3)``, ``x (*, C_in, 3)``
        - **output:** ``(*, C_out, 3)``
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        negative_slope: float = 0.2,
        share_nonlinearity: bool = False,
        relaxed: bool = False,
        gamma_init: float = 1.0,
        init_std: float | None = None,
    ) -> None:
        super().__init__()
        self.negative_slope = negative_slope
        self.map_to_dir = vn_linear(
            in_channels, 1 if share_nonlinearity else out_channels, relaxed, gamma_init, init_std
        )

    def forward(self, q: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Apply the nonlinearity to ``q`` with directions computed from ``x``."""
        k = self.map_to_dir(x)
        dot = (q * k).sum(-1, keepdim=True)
        k_sq = (k * k).sum(-1, keepdim=True)
        projected = q - (dot < 0).to(q.dtype) * dot / (k_sq + EPS) * k
        return self.negative_slope * q + (1 - self.negative_slope) * projected


class VNLinearLeakyReLU(nn.Module):
    """VN linear map followed by VN-LeakyReLU (direction from the same input), as in the VN code.

    Shapes:
        - **input:** ``(*, in_channels, 3)``
        - **output:** ``(*, out_channels, 3)``
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        share_nonlinearity: bool = False,
        relaxed: bool = False,
        gamma_init: float = 1.0,
        init_std: float | None = None,
    ) -> None:
        super().__init__()
        self.map_to_feat = vn_linear(in_channels, out_channels, relaxed, gamma_init, init_std)
        self.act = VNLeakyReLU(in_channels, out_channels, 0.2, share_nonlinearity, relaxed, gamma_init, init_std)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the block; see the class docstring for shapes."""
        return self.act(self.map_to_feat(x), x)


class VNMaxPool(nn.Module):
    r"""VN max pooling over points: per channel, keep the vector with the largest :math:`\langle x, Ux\rangle`.

    Shapes:
        - **input:** ``(B, N, C, 3)``
        - **output:** ``(B, C, 3)``
    """

    def __init__(self, channels: int, relaxed: bool = False, gamma_init: float = 1.0, init_std=None) -> None:
        super().__init__()
        self.map_to_dir = vn_linear(channels, channels, relaxed, gamma_init, init_std)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Pool over the point axis."""
        dot = (x * self.map_to_dir(x)).sum(-1)  # (B, N, C)
        idx = dot.argmax(1)  # (B, C)
        return torch.gather(x, 1, idx[:, None, :, None].expand(-1, 1, -1, 3)).squeeze(1)


class VNInvariant(nn.Module):
    r"""Rotation-invariant features :math:`Z = X F^\top` in an equivariant frame :math:`F = V\sigma(U X)`.

    VNStdFeature of the VN code.

    Rotating ``X ↦ X Qᵀ`` rotates the 3 frame vectors alike, so ``X Qᵀ (F Qᵀ)ᵀ = X Fᵀ``.

    Shapes:
        - **input:** ``(*, C, 3)``
        - **output:** ``(*, C, 3)`` invariant scalars
    """

    def __init__(self, channels: int, relaxed: bool = False, gamma_init: float = 1.0, init_std=None) -> None:
        super().__init__()
        hidden = max(channels // 2, 1)
        self.vn = VNLinearLeakyReLU(channels, hidden, False, relaxed, gamma_init, init_std)
        self.frame = vn_linear(hidden, 3, relaxed, gamma_init, init_std)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return the invariant coordinates of ``x`` in the learned frame."""
        return torch.einsum("...cd,...kd->...ck", x, self.frame(self.vn(x)))


def knn(features: torch.Tensor, k: int) -> torch.Tensor:
    """Indices of the ``k`` nearest points (self included) by Euclidean distance of flat features.

    Plain torch (``cdist`` + ``topk``), no compiled extension.

    Shapes:
        - **input:** ``(B, N, D)``
        - **output:** ``(B, N, k)``
    """
    k = min(k, features.shape[1])
    return torch.cdist(features, features).topk(k, dim=-1, largest=False).indices


def graph_feature(x: torch.Tensor, k: int, cross: bool = False) -> torch.Tensor:
    r"""DGCNN edge features of VN features on a kNN graph: :math:`[x_j - x_i,\ x_i\ (,\ x_j \times x_i)]`.

    The kNN graph uses distances between the flattened ``(C, 3)`` features, which rotations preserve.

    Shapes:
        - **input:** ``(B, N, C, 3)``
        - **output:** ``(B, N, k, 2C or 3C, 3)``
    """
    b, n, c, _ = x.shape
    idx = knn(x.reshape(b, n, 3 * c), k)
    neighbours = x[torch.arange(b, device=x.device)[:, None, None], idx]  # (B, N, k, C, 3)
    center = x[:, :, None].expand_as(neighbours)
    parts = [neighbours - center, center]
    if cross:
        parts.append(torch.linalg.cross(neighbours, center, dim=-1))
    return torch.cat(parts, dim=-2)


class VNClassifier(nn.Module):
    """What the VN point-cloud classifiers share: option checks, ``(N, 3)`` inputs and the VN initialisation.

    A subclass calls ``super().__init__(...)`` first, builds its layers with ``**self.vn_options`` (``relaxed``,
    ``gamma_init``, ``init_std``), calls :meth:`reset_parameters` and implements :meth:`logits`.

    Args:
        num_classes, k, hidden: Positive ints (number of classes, kNN neighbours, hidden size of the head).
        channels: Positive ints, at least ``min_channels`` of them.
        relaxed, gamma_init, neq_init_std: The relaxation of every VN linear map (see :func:`vn_linear`).
        **sizes: Further positive-int options of the subclass, checked in order after ``num_classes``.

    Shapes:
        - **input:** points ``(B, N, 3)`` or ``(N, 3)``
        - **output:** logits ``(B, num_classes)`` (or ``(num_classes,)``)
    """

    def __init__(self, num_classes: int, channels: Sequence[int], k: int, hidden: int, relaxed: bool,
                 gamma_init: float, neq_init_std: float | None, *, min_channels: int, **sizes: int) -> None:
        super().__init__()
        check_positive_ints(num_classes=num_classes, **sizes, k=k, hidden=hidden)
        self.channels = tuple(channels)
        if len(self.channels) < min_channels:
            raise ValueError(f"Expected 'channels' to have at least {min_channels} entries (got {self.channels!r})")
        for c in self.channels:
            check_positive_ints(channels=c)
        self.k, self.relaxed = k, bool(relaxed)
        self.vn_options = dict(relaxed=relaxed, gamma_init=gamma_init, init_std=neq_init_std)

    def reset_parameters(self) -> None:
        """Re-initialise the parameters (:func:`reset_vn`)."""
        reset_vn(self)

    def logits(self, points: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, num_classes)`` of points ``(B, N, 3)``."""
        raise NotImplementedError

    def forward(self, points: torch.Tensor) -> torch.Tensor:
        """Classify point clouds; see the class docstring for shapes."""
        if points.dim() == 2:
            return self.forward(points[None])[0]
        if points.dim() != 3 or points.shape[-1] != 3:
            raise ValueError(f"Expected 'points' to have shape (B, N, 3) or (N, 3) (got {tuple(points.shape)})")
        return self.logits(points)
