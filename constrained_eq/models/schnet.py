r"""SchNet (Schütt et al., 2017) on PyG, with ACE's non-invariant per-atom branches (SPEC §2.2)."""

from __future__ import annotations

import torch
from torch import nn
from torch_geometric.nn.models import schnet as pyg_schnet

from constrained_eq.homotopy import HomotopicLayer, LinearBranch

__all__ = ["SchNet", "SchNetBranch", "SchNetInteraction", "radius_interaction_graph"]


def radius_interaction_graph(
    pos: torch.Tensor, batch: torch.Tensor, cutoff: float = 10.0, max_num_neighbors: int = 32
) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Edges :math:`j \to i` between distinct atoms of one molecule with :math:`\|x_i - x_j\| \le r_c`.

    Plain torch (dense ``cdist`` + mask + ``topk``), a drop-in for PyG's ``RadiusInteractionGraph``
    where ``torch_cluster`` is missing; each atom keeps at most its ``max_num_neighbors`` nearest
    neighbours. Dense in the number of atoms of the batch (fine for QM9 batches).

    Shapes:
        - **input:** ``pos (|V|, 3)``, ``batch (|V|,)``
        - **output:** ``(edge_index (2, |E|), edge_weight (|E|,))``, ``edge_index[0]`` the source ``j``
    """
    dist = torch.cdist(pos, pos)
    n = pos.shape[0]
    valid = (batch[:, None] == batch[None, :]) & ~torch.eye(n, dtype=torch.bool, device=pos.device)
    valid &= dist <= cutoff
    k = min(max_num_neighbors, max(n - 1, 0))
    masked = dist.masked_fill(~valid, float("inf"))
    nearest = masked.topk(k, dim=1, largest=False).indices  # (|V|, k) neighbours j of each target i
    target = torch.arange(n, device=pos.device)[:, None].expand_as(nearest)
    keep = valid.gather(1, nearest)
    row, col = nearest[keep], target[keep]
    return torch.stack([row, col]), dist[row, col]


class _RadiusGraph(nn.Module):
    def __init__(self, cutoff: float, max_num_neighbors: int) -> None:
        super().__init__()
        self.cutoff, self.max_num_neighbors = cutoff, max_num_neighbors

    def forward(self, pos: torch.Tensor, batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return radius_interaction_graph(pos, batch, self.cutoff, self.max_num_neighbors)


class SchNetInteraction(pyg_schnet.InteractionBlock):
    """PyG's SchNet ``InteractionBlock`` that also accepts (and ignores) the raw positions.

    Same parameters and ``state_dict`` keys as PyG's block, so a projected model loads PyG weights.

    Shapes:
        - **input:** ``h (|V|, F)``, ``edge_index (2, |E|)``, ``edge_weight (|E|,)``,
          ``edge_attr (|E|, num_gaussians)``, ``pos (|V|, 3)``
        - **output:** ``(|V|, F)``
    """

    def forward(self, h, edge_index, edge_weight, edge_attr, pos=None):  # noqa: D102
        return super().forward(h, edge_index, edge_weight, edge_attr)


class SchNetBranch(nn.Module):
    r"""Non-invariant per-atom branch :math:`\Delta h_i = W_2\,\mathrm{SiLU}(W_1 x_i)` on raw Cartesian positions.

    ACE §2.2 placement for SchNet (SPEC §2.2): f_neq sees the raw coordinates, so it breaks both
    rotation and translation invariance; bias-free so that f_neq(0) = 0.

    Args:
        hidden_channels (int): Embedding size F.
        neq_hidden (int, optional): Hidden size of the MLP (default: :obj:`32`).
        init_std (float, optional): Weight init ``N(0, init_std²)`` (default: :obj:`None`, torch's).

    Shapes:
        - **input:** as :class:`SchNetInteraction`
        - **output:** ``(|V|, F)``
    """

    def __init__(self, hidden_channels: int, neq_hidden: int = 32, init_std: float | None = None) -> None:
        super().__init__()
        self.net = nn.Sequential(
            LinearBranch(3, neq_hidden, init_std=init_std),
            nn.SiLU(),
            LinearBranch(neq_hidden, hidden_channels, init_std=init_std),
        )

    def reset_parameters(self) -> None:
        """Re-initialise the parameters."""
        for module in self.net:
            if isinstance(module, LinearBranch):
                module.reset_parameters()

    def forward(self, h, edge_index, edge_weight, edge_attr, pos):  # noqa: D102
        return self.net(pos)


class SchNet(pyg_schnet.SchNet):
    r"""PyG's SchNet with ACE relaxation: :math:`h \leftarrow h + v_l(h) + \gamma_l\,\mathrm{MLP}_l(x)` per block.

    SchNet (Schütt et al. 2017): :math:`h_i \leftarrow h_i + v_l(h, \{W(e_{ij})\})` with continuous
    filters on Gaussian-expanded distances, invariant under E(3). With ``relaxed``, each interaction
    block ``v_l`` becomes a :class:`~constrained_eq.homotopy.HomotopicLayer` of a
    :class:`SchNetInteraction` and a :class:`SchNetBranch` (ACE eq. 3); with every ``γ = 0`` the model
    is E(3) invariant and :func:`~constrained_eq.project` gives exactly the parameters and
    ``state_dict`` keys of ``relaxed=False`` (= PyG's SchNet). The interaction graph is
    :func:`radius_interaction_graph` (no compiled extension needed). ``dipole=True`` is not supported.

    Args:
        hidden_channels (int, optional): Embedding size (default: :obj:`128`).
        num_filters (int, optional): Filter size (default: :obj:`128`).
        num_interactions (int, optional): Interaction blocks (default: :obj:`6`).
        num_gaussians (int, optional): Gaussians of the distance expansion (default: :obj:`50`).
        cutoff (float, optional): Cutoff radius (default: :obj:`10.0`).
        max_num_neighbors (int, optional): Neighbours kept per atom (default: :obj:`32`).
        readout (str, optional): ``"add"`` or ``"mean"`` (default: :obj:`"add"`).
        relaxed (bool, optional): Add the γ-scaled branches (default: :obj:`True`).
        neq_hidden (int, optional): Hidden size of each branch MLP (default: :obj:`32`).
        gamma_init (float, optional): Initial γ (default: :obj:`1.0`).
        neq_init_std (float, optional): Branch weight init std (default: :obj:`None`).
        **kwargs: ``mean``, ``std``, ``atomref`` of PyG's SchNet.

    Shapes:
        - **input:** ``z (|V|,)`` atomic numbers, ``pos (|V|, 3)``, ``batch (|V|,)`` or None
        - **output:** ``(num_graphs, 1)``; γ: ``(num_interactions,)`` via ``constrained_eq.gammas``
    """

    def __init__(
        self,
        hidden_channels: int = 128,
        num_filters: int = 128,
        num_interactions: int = 6,
        num_gaussians: int = 50,
        cutoff: float = 10.0,
        max_num_neighbors: int = 32,
        readout: str = "add",
        relaxed: bool = True,
        neq_hidden: int = 32,
        gamma_init: float = 1.0,
        *,
        neq_init_std: float | None = None,
        **kwargs,
    ) -> None:
        if kwargs.get("dipole", False):
            raise ValueError("Expected 'dipole' to be False (got True); predict the dipole norm with readout='add'")
        if readout not in ("add", "mean"):
            raise ValueError(f"Expected 'readout' to be one of 'add', 'mean' (got {readout!r})")
        super().__init__(
            hidden_channels, num_filters, num_interactions, num_gaussians, cutoff,
            interaction_graph=_RadiusGraph(cutoff, max_num_neighbors), max_num_neighbors=max_num_neighbors,
            readout=readout, **kwargs,
        )  # fmt: skip
        self.relaxed = bool(relaxed)
        blocks = []
        for _ in range(num_interactions):
            block: nn.Module = SchNetInteraction(hidden_channels, num_gaussians, num_filters, cutoff)
            if relaxed:
                block = HomotopicLayer(block, SchNetBranch(hidden_channels, neq_hidden, neq_init_std), gamma_init)
            blocks.append(block)
        self.interactions = nn.ModuleList(blocks)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Re-initialise the parameters."""
        interactions, self.interactions = self.interactions, nn.ModuleList()
        super().reset_parameters()
        self.interactions = interactions
        for block in interactions:
            for sub in (block.eq, block.neq) if isinstance(block, HomotopicLayer) else (block,):
                sub.reset_parameters()

    def forward(self, z: torch.Tensor, pos: torch.Tensor, batch: torch.Tensor | None = None) -> torch.Tensor:
        """Predict one value per molecule; see the class docstring for shapes."""
        batch = torch.zeros_like(z) if batch is None else batch
        h = self.embedding(z)
        edge_index, edge_weight = self.interaction_graph(pos, batch)
        edge_attr = self.distance_expansion(edge_weight)
        for interaction in self.interactions:
            h = h + interaction(h, edge_index, edge_weight, edge_attr, pos)
        h = self.lin2(self.act(self.lin1(h)))
        if self.mean is not None and self.std is not None:
            h = h * self.std + self.mean
        if self.atomref is not None:
            h = h + self.atomref(z)
        out = self.readout(h, batch, dim=0)
        return out if self.scale is None else self.scale * out
