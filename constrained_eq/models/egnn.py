r"""E(n)-equivariant graph network with velocities (EGNN_vel, Satorras et al. 2021) and ACE/CR relaxation."""

from __future__ import annotations

import torch
from torch import nn

from constrained_eq.homotopy import HomotopicLayer, LinearBranch
from constrained_eq.models._options import check_positive_ints
from constrained_eq.models.graph import graph_mean, segment_sum
from constrained_eq.symmetry.reps import DirectSumRep, ScalarRep, VectorRep

__all__ = ["EGNN", "EGNNLayer", "EGNNBranch", "egnn_layers", "nbody_egnn_inputs"]


class EGNNLayer(nn.Module):
    r"""One EGNN_vel layer (Satorras et al. 2021, eqs. 3–6 and 7 with velocity).

    .. math::
        m_{ij} = \phi_e(h_i, h_j, \|x_i - x_j\|^2, a_{ij}), \quad
        x_i' = x_i + \frac{1}{|\mathcal{N}(i)|}\sum_j (x_i - x_j)\,\phi_x(m_{ij}) + \phi_v(h_i)\, v_i, \quad
        h_i' = h_i + \phi_h\big(h_i, \textstyle\sum_j m_{ij}\big).

    As the EGNN N-body code (``E_GCL_vel``, recurrent, no attention, unnormalised differences, mean
    aggregation of coordinate messages, ``φ_x``'s last layer bias-free with xavier gain 0.001), minus
    its ``±100`` clamp of coordinate messages (never active, and not rotation equivariant).

    Args:
        hidden_nf (int): Node feature size.
        edge_nf (int, optional): Edge attribute size (default: :obj:`2`, ``[q_i q_j, ‖x_i − x_j‖²]``).

    Shapes:
        - **input:** ``h (|V|, F)``, ``x (|V|, 3)``, ``vel (|V|, 3)``, ``edge_index (2, |E|)``,
          ``edge_attr (|E|, edge_nf)``, ``batch (|V|,)`` or None (unused)
        - **output:** ``(h' (|V|, F), x' (|V|, 3))``
    """

    def __init__(self, hidden_nf: int, edge_nf: int = 2) -> None:
        super().__init__()
        act = nn.SiLU
        self.edge_mlp = nn.Sequential(
            nn.Linear(2 * hidden_nf + 1 + edge_nf, hidden_nf), act(), nn.Linear(hidden_nf, hidden_nf), act()
        )
        self.node_mlp = nn.Sequential(nn.Linear(2 * hidden_nf, hidden_nf), act(), nn.Linear(hidden_nf, hidden_nf))
        self.coord_mlp = nn.Sequential(nn.Linear(hidden_nf, hidden_nf), act(), nn.Linear(hidden_nf, 1, bias=False))
        self.coord_mlp_vel = nn.Sequential(nn.Linear(hidden_nf, hidden_nf), act(), nn.Linear(hidden_nf, 1))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Re-initialise the parameters."""
        for module in self.modules():
            if isinstance(module, nn.Linear):
                module.reset_parameters()
        nn.init.xavier_uniform_(self.coord_mlp[-1].weight, gain=0.001)

    def forward(
        self,
        h: torch.Tensor,
        x: torch.Tensor,
        vel: torch.Tensor,
        edge_index: torch.Tensor,
        edge_attr: torch.Tensor,
        batch: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Apply the layer; see the class docstring for shapes."""
        row, col = edge_index
        diff = x[row] - x[col]
        radial = (diff * diff).sum(-1, keepdim=True)
        m = self.edge_mlp(torch.cat([h[row], h[col], radial, edge_attr], dim=-1))
        count = segment_sum(torch.ones_like(row, dtype=x.dtype), row, x.shape[0]).clamp(min=1)
        x_new = x + segment_sum(diff * self.coord_mlp(m), row, x.shape[0]) / count[:, None]
        x_new = x_new + self.coord_mlp_vel(h) * vel
        h_new = h + self.node_mlp(torch.cat([h, segment_sum(m, row, h.shape[0])], dim=-1))
        return h_new, x_new


class EGNNBranch(nn.Module):
    r"""Unconstrained per-node branch :math:`(\Delta h_i, \Delta x_i) = W\,[x_i - \bar x, v_i, h_i]` (ACE §2.2).

    ``W`` is a :class:`~constrained_eq.homotopy.LinearBranch` that carries the so(3) action of its
    input (two cartesian vectors, then scalars) and output (scalars, then one vector), so CR's
    Lie-derivative penalty is analytic. With ``neq_hidden`` it is instead a bias-free MLP
    ``LinearBranch → SiLU → LinearBranch`` (no analytic action). Centring on the graph's mean
    position keeps the branch translation invariant.

    Args:
        hidden_nf (int): Node feature size.
        neq_hidden (int, optional): Hidden size of an MLP branch (default: :obj:`None`, linear).
        init_std (float, optional): Weight init ``N(0, init_std²)`` (default: :obj:`None`, torch's).

    Shapes:
        - **input:** as :class:`EGNNLayer`
        - **output:** ``(Δh (|V|, F), Δx (|V|, 3))``
    """

    def __init__(self, hidden_nf: int, neq_hidden: int | None = None, init_std: float | None = None) -> None:
        super().__init__()
        self.hidden_nf = hidden_nf
        d_in, d_out = 6 + hidden_nf, hidden_nf + 3
        if neq_hidden is None:
            rep_in = DirectSumRep(VectorRep(2), ScalarRep(hidden_nf)).lie_algebra()  # [x, v, h]
            rep_out = DirectSumRep(ScalarRep(hidden_nf), VectorRep(1)).lie_algebra()  # [Δh, Δx]
            self.net = LinearBranch(d_in, d_out, rep_in, rep_out, init_std=init_std)
        elif isinstance(neq_hidden, int) and neq_hidden > 0:
            self.net = nn.Sequential(
                LinearBranch(d_in, neq_hidden, init_std=init_std),
                nn.SiLU(),
                LinearBranch(neq_hidden, d_out, init_std=init_std),
            )
        else:
            raise ValueError(f"Expected 'neq_hidden' to be None or a positive int (got {neq_hidden!r})")

    def reset_parameters(self) -> None:
        """Re-initialise the parameters."""
        for module in self.modules():
            if isinstance(module, LinearBranch):
                module.reset_parameters()

    def forward(
        self,
        h: torch.Tensor,
        x: torch.Tensor,
        vel: torch.Tensor,
        edge_index: torch.Tensor,
        edge_attr: torch.Tensor,
        batch: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Apply the layer; see the class docstring for shapes."""
        out = self.net(torch.cat([x - graph_mean(x, batch), vel, h], dim=-1))
        return out[:, : self.hidden_nf], out[:, self.hidden_nf :]


def nbody_egnn_inputs(
    loc: torch.Tensor,
    vel: torch.Tensor,
    charges: torch.Tensor,
    edge_index: torch.Tensor,
    batch: torch.Tensor | None = None,
) -> tuple[torch.Tensor, ...]:
    """EGNN N-body encoding: ``h = ‖v‖``, ``edge_attr = [q_i q_j, ‖x_i − x_j‖²]`` (EGNN ``main_nbody.py``).

    Returns the arguments of :meth:`EGNN.forward`: ``(h, loc, vel, edge_index, edge_attr, batch)``.
    """
    row, col = edge_index
    dist = ((loc[row] - loc[col]) ** 2).sum(-1, keepdim=True)
    edge_attr = torch.cat([charges[row] * charges[col], dist], dim=-1)
    return vel.norm(dim=-1, keepdim=True), loc, vel, edge_index, edge_attr, batch


def egnn_layers(n_layers: int, hidden_nf: int, in_edge_nf: int, relaxed: bool, neq_hidden: int | None,
                gamma_init: float, neq_init_std: float | None) -> nn.ModuleList:
    """``n_layers`` :class:`EGNNLayer` s, each with ``relaxed`` a :class:`HomotopicLayer` with an :class:`EGNNBranch`.

    The stack of :class:`EGNN` and :class:`~constrained_eq.models.EGNO`: ``f_l = f^{eq}_l + γ_l f^{neq}_l``.
    """
    layers = []
    for _ in range(n_layers):
        layer: nn.Module = EGNNLayer(hidden_nf, in_edge_nf)
        if relaxed:
            layer = HomotopicLayer(layer, EGNNBranch(hidden_nf, neq_hidden, neq_init_std), gamma_init)
        layers.append(layer)
    return nn.ModuleList(layers)


class EGNN(nn.Module):
    r"""EGNN_vel for N-body (Satorras et al. 2021), relaxed as :math:`f_i = f^{eq}_i + \gamma_i f^{neq}_i`.

    ``h ← W_emb h``; then for each layer ``(h, x) ← L_i(h, x)`` with ``L_i`` an :class:`EGNNLayer`
    or, if ``relaxed``, a :class:`~constrained_eq.homotopy.HomotopicLayer` of an :class:`EGNNLayer`
    and an :class:`EGNNBranch` (ACE eq. 3); the output is the final ``x``. Layers sit in
    ``self.layers``, so replacing each ``HomotopicLayer`` by its ``eq`` gives exactly the state_dict
    keys of ``relaxed=False``. With all ``γ = 0`` the model is E(3) equivariant.

    Args:
        in_node_nf (int): Input node feature size (1 for ``‖v‖``).
        hidden_nf (int, optional): Hidden size (default: :obj:`64`).
        n_layers (int, optional): Number of layers (default: :obj:`4`).
        relaxed (bool, optional): Add the γ-scaled unconstrained branches (default: :obj:`True`).
        neq_hidden (int, optional): Hidden size of an MLP branch (default: :obj:`None`, linear).
        gamma_init (float, optional): Initial γ (default: :obj:`1.0`).
        in_edge_nf (int, optional): Edge attribute size (default: :obj:`2`).
        neq_init_std (float, optional): Branch weight init std (default: :obj:`None`).

    Shapes:
        - **input:** ``h (|V|, in_node_nf)``, ``x (|V|, 3)``, ``vel (|V|, 3)``, ``edge_index (2, |E|)``,
          ``edge_attr (|E|, in_edge_nf)``, ``batch (|V|,)`` or None
        - **output:** ``x (|V|, 3)``; γ: ``(n_layers,)`` via ``constrained_eq.gammas``
    """

    def __init__(
        self,
        in_node_nf: int,
        hidden_nf: int = 64,
        n_layers: int = 4,
        relaxed: bool = True,
        neq_hidden: int | None = None,
        gamma_init: float = 1.0,
        *,
        in_edge_nf: int = 2,
        neq_init_std: float | None = None,
    ) -> None:
        super().__init__()
        check_positive_ints(in_node_nf=in_node_nf, hidden_nf=hidden_nf, n_layers=n_layers)
        self.relaxed = bool(relaxed)
        self.embedding = nn.Linear(in_node_nf, hidden_nf)
        self.layers = egnn_layers(n_layers, hidden_nf, in_edge_nf, relaxed, neq_hidden, gamma_init, neq_init_std)

    def reset_parameters(self) -> None:
        """Re-initialise the parameters."""
        self.embedding.reset_parameters()
        for layer in self.layers:
            layer.reset_parameters()

    def forward(
        self,
        h: torch.Tensor,
        x: torch.Tensor,
        vel: torch.Tensor,
        edge_index: torch.Tensor,
        edge_attr: torch.Tensor,
        batch: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Apply the layer; see the class docstring for shapes."""
        h = self.embedding(h)
        for layer in self.layers:
            h, x = layer(h, x, vel, edge_index, edge_attr, batch)
        return x
