r"""Equivariant graph neural operator (EGNO, Xu et al. 2024) for trajectory forecasting, with ACE relaxation."""

from __future__ import annotations

import math

import torch
from torch import nn

from constrained_eq.models._options import check_positive_ints
from constrained_eq.models.egnn import egnn_layers

__all__ = ["EGNO", "TemporalConv", "mocap_egno_inputs"]


class TemporalConv(nn.Module):
    r"""Fourier convolution along time (FNO-style): :math:`y = \mathcal{F}^{-1}\big(R \cdot (\mathcal{F} u)_{k<K}\big)`.

    The learned complex weights :math:`R_k \in \mathbb{C}^{C_{out} \times C_{in}}` mix channels only, so
    applied to each Cartesian component of ``C`` vector channels with the same ``R`` it commutes with
    rotations (EGNO §3.2).

    Args:
        in_channels (int): Channels ``C_in``.
        out_channels (int): Channels ``C_out``.
        num_modes (int): Lowest Fourier modes kept ``K`` (at most ``T // 2 + 1`` are used).

    Shapes:
        - **input:** ``(T, *, C_in)``
        - **output:** ``(T, *, C_out)``
    """

    def __init__(self, in_channels: int, out_channels: int, num_modes: int) -> None:
        super().__init__()
        self.in_channels, self.out_channels, self.num_modes = in_channels, out_channels, num_modes
        self.weight = nn.Parameter(torch.empty(num_modes, out_channels, in_channels, 2))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Re-initialise the parameters."""
        nn.init.uniform_(self.weight, 0.0, 1.0 / (self.in_channels * self.out_channels))

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        """Apply the convolution along the leading (time) axis."""
        t = u.shape[0]
        spectrum = torch.fft.rfft(u, dim=0)  # (T//2+1, *, C_in)
        k = min(self.num_modes, spectrum.shape[0])
        weight = torch.view_as_complex(self.weight[:k].to(u.dtype).contiguous())  # (k, C_out, C_in)
        out = spectrum.new_zeros(spectrum.shape[:-1] + (self.out_channels,))
        out[:k] = torch.einsum("k...i,koi->k...o", spectrum[:k], weight)
        return torch.fft.irfft(out, n=t, dim=0)

    def extra_repr(self) -> str:  # noqa: D102
        return f"{self.in_channels}, {self.out_channels}, num_modes={self.num_modes}"


def _time_embedding(num_steps: int, dim: int, dtype: torch.dtype, device) -> torch.Tensor:
    """Sinusoidal embedding of the step index ``t / T``, shape ``(T, dim)``."""
    t = torch.arange(num_steps, dtype=dtype, device=device)[:, None] / num_steps
    freq = torch.exp(-math.log(100.0) * torch.arange(dim // 2, dtype=dtype, device=device) / max(dim // 2, 1))
    return torch.cat([torch.sin(t * freq * 2 * math.pi), torch.cos(t * freq * 2 * math.pi)], dim=-1)


def mocap_egno_inputs(data) -> tuple[torch.Tensor, ...]:
    """EGNO MoCap encoding of a PyG (batched) ``Data(pos, vel, edge_index, edge_attr)``.

    ``h = ‖v‖``, ``edge_attr = [bond type, ‖x_i − x_j‖²]``. Returns the arguments of
    :meth:`EGNO.forward`: ``(h, pos, vel, edge_index, edge_attr, batch)``.
    """
    row, col = data.edge_index
    dist = ((data.pos[row] - data.pos[col]) ** 2).sum(-1, keepdim=True)
    edge_attr = torch.cat([data.edge_attr.to(dist.dtype), dist], dim=-1)
    return (
        data.vel.norm(dim=-1, keepdim=True),
        data.pos,
        data.vel,
        data.edge_index,
        edge_attr,
        getattr(data, "batch", None),
    )


class EGNO(nn.Module):
    r"""EGNO (Xu et al. 2024): EGNN layers on ``T`` time-stamped copies, interleaved with temporal Fourier convolutions.

    The state is replicated over ``T`` future steps, ``h^t = W_{emb}[h, \mathrm{emb}(t/T)]``, ``x^t = x``.
    Each layer ``l`` applies

    .. math::
        h \leftarrow h + \mathrm{SiLU}(\mathcal{K}^h_l h), \quad
        x \leftarrow x + \mathcal{K}^x_l (x - x^{(0)}), \quad
        (h^t, x^t) \leftarrow L_l(h^t, x^t) \;\; \forall t,

    with :math:`\mathcal{K}` :class:`TemporalConv` s (one complex weight per mode for ``x``, shared by
    its 3 components, so E(3) equivariant) and ``L_l`` an :class:`~constrained_eq.models.EGNNLayer`, or if
    ``relaxed`` a :class:`~constrained_eq.homotopy.HomotopicLayer` of it and an
    :class:`~constrained_eq.models.EGNNBranch` :math:`\gamma_l W[x_i - \bar x, v_i, h_i]` (ACE §2.2:
    every EGNN layer is perturbed; the temporal layers are already equivariant). The output is the
    predicted trajectory ``x^1..x^T``; the MoCap task of SPEC §4.4 trains on its last step ``x^T``
    against ``x_{t+Δ}``. This is the full EGNO structure (not a single-step EGNN), at reduced width.

    Args:
        in_node_nf (int, optional): Input node feature size (default: :obj:`1`, ``‖v‖``).
        hidden_nf (int, optional): Hidden size (default: :obj:`64`).
        n_layers (int, optional): EGNN layers (default: :obj:`4`).
        num_timesteps (int, optional): Future steps ``T`` (default: :obj:`8`).
        num_modes (int, optional): Fourier modes per temporal convolution (default: :obj:`2`).
        relaxed (bool, optional): Add the γ-scaled branches (default: :obj:`True`).
        neq_hidden (int, optional): Hidden size of an MLP branch (default: :obj:`None`, linear).
        gamma_init (float, optional): Initial γ (default: :obj:`1.0`).
        in_edge_nf (int, optional): Edge attribute size (default: :obj:`2`).
        time_emb_dim (int, optional): Size of the time embedding (default: :obj:`16`).
        neq_init_std (float, optional): Branch weight init std (default: :obj:`None`).

    Shapes:
        - **input:** ``h (|V|, in_node_nf)``, ``x (|V|, 3)``, ``vel (|V|, 3)``, ``edge_index (2, |E|)``,
          ``edge_attr (|E|, in_edge_nf)``, ``batch (|V|,)`` or None
        - **output:** ``(T, |V|, 3)``; γ: ``(n_layers,)`` via ``constrained_eq.gammas``
    """

    def __init__(
        self,
        in_node_nf: int = 1,
        hidden_nf: int = 64,
        n_layers: int = 4,
        num_timesteps: int = 8,
        num_modes: int = 2,
        relaxed: bool = True,
        neq_hidden: int | None = None,
        gamma_init: float = 1.0,
        *,
        in_edge_nf: int = 2,
        time_emb_dim: int = 16,
        neq_init_std: float | None = None,
    ) -> None:
        super().__init__()
        check_positive_ints(in_node_nf=in_node_nf, hidden_nf=hidden_nf, n_layers=n_layers, num_timesteps=num_timesteps,
                            num_modes=num_modes, time_emb_dim=time_emb_dim)
        self.relaxed, self.num_timesteps, self.time_emb_dim = bool(relaxed), num_timesteps, time_emb_dim
        self.embedding = nn.Linear(in_node_nf + 2 * (time_emb_dim // 2), hidden_nf)
        self.time_h = nn.ModuleList(TemporalConv(hidden_nf, hidden_nf, num_modes) for _ in range(n_layers))
        self.time_x = nn.ModuleList(TemporalConv(1, 1, num_modes) for _ in range(n_layers))
        self.layers = egnn_layers(n_layers, hidden_nf, in_edge_nf, relaxed, neq_hidden, gamma_init, neq_init_std)

    def reset_parameters(self) -> None:
        """Re-initialise the parameters."""
        self.embedding.reset_parameters()
        for conv in [*self.time_h, *self.time_x]:
            conv.reset_parameters()
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
        """Predict the trajectory; see the class docstring for shapes."""
        t_steps, n = self.num_timesteps, x.shape[0]
        batch = torch.zeros(n, dtype=torch.long, device=x.device) if batch is None else batch
        emb = _time_embedding(t_steps, self.time_emb_dim, x.dtype, x.device)
        h = self.embedding(torch.cat([h.expand(t_steps, -1, -1), emb[:, None].expand(-1, n, -1)], dim=-1))
        x0 = x.expand(t_steps, -1, -1)
        xt, vt = x0, vel.expand(t_steps, -1, -1).reshape(t_steps * n, 3)
        offsets = torch.arange(t_steps, device=x.device)
        edges_t = (edge_index[:, None, :] + (offsets * n)[None, :, None]).reshape(2, -1)
        attr_t = edge_attr.repeat(t_steps, 1)
        batch_t = (batch[None, :] + (offsets * n)[:, None]).reshape(-1)  # ids < n: distinct per step, no sync
        for time_h, time_x, layer in zip(self.time_h, self.time_x, self.layers, strict=True):
            h = h + nn.functional.silu(time_h(h))
            xt = xt + time_x((xt - x0)[..., None])[..., 0]
            h_flat, x_flat = layer(h.reshape(t_steps * n, -1), xt.reshape(t_steps * n, 3), vt, edges_t, attr_t, batch_t)
            h, xt = h_flat.reshape(t_steps, n, -1), x_flat.reshape(t_steps, n, 3)
        return xt
