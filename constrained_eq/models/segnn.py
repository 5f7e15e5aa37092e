r"""Steerable E(3)-equivariant GNN (SEGNN, Brandstetter et al. 2022) with CR's relaxation, on e3nn."""

from __future__ import annotations

import torch
from e3nn import o3
from torch import nn

from constrained_eq.homotopy import HomotopicLayer, LinearBranch
from constrained_eq.models._options import check_positive_ints
from constrained_eq.models.graph import graph_mean, segment_sum
from constrained_eq.models.steerable import SteerableLinear, balanced_irreps, check_choice
from constrained_eq.symmetry.reps import IrrepsRep

__all__ = [
    "DISTANCES",
    "EDGE_VECTORS",
    "PLACEMENTS",
    "SEGNN",
    "SEGNNLayer",
    "SEGNNBranch",
    "SEGNNProductBranch",
    "nbody_segnn_inputs",
]

PLACEMENTS = ("cr", "ace")
EDGE_VECTORS = ("x_i-x_j", "x_j-x_i")
DISTANCES = ("squared", "norm")


class SEGNNBranch(nn.Module):
    r"""CR's unconstrained term :math:`x \mapsto W x` over all irrep components (CR eq. 2, [CR-code]).

    A :class:`~constrained_eq.homotopy.LinearBranch` whose ``rep_in``/``rep_out`` are the e3nn
    so(3) generators of ``irreps_in``/``irreps_out``; the attributes are ignored.

    Shapes:
        - **input:** ``x (*, irreps_in.dim)``, ``attr`` (unused)
        - **output:** ``(*, irreps_out.dim)``
    """

    def __init__(self, irreps_in: o3.Irreps, irreps_out: o3.Irreps, init_std: float | None = None) -> None:
        super().__init__()
        irreps_in, irreps_out = o3.Irreps(irreps_in), o3.Irreps(irreps_out)
        algebra_in, algebra_out = IrrepsRep(irreps_in).lie_algebra(), IrrepsRep(irreps_out).lie_algebra()
        self.net = LinearBranch(irreps_in.dim, irreps_out.dim, algebra_in, algebra_out, init_std=init_std)

    def reset_parameters(self) -> None:
        """Re-initialise the parameters."""
        self.net.reset_parameters()

    def forward(self, x: torch.Tensor, attr: torch.Tensor | None = None) -> torch.Tensor:
        """Apply the layer; see the class docstring for shapes."""
        return self.net(x)


class SEGNNProductBranch(nn.Module):
    r"""ACE's unconstrained steerable layer :math:`(x, a) \mapsto W\,\mathrm{vec}(x \otimes a)`.

    A steerable layer is a linear map of :math:`x \otimes a` restricted by Clebsch–Gordan coefficients;
    this branch is the same linear map with a dense, bias-free ``W`` over every component of the outer
    product. Its so(3) action is the Kronecker sum :math:`d\rho_x \otimes I + I \otimes d\rho_a`, so CR's
    Lie derivative of ``W`` is available too. Placed on both message sub-layers of every SEGNN layer it
    gives ACE's parameter count (Table C-ACE3: 937,960 at the N-body configuration).

    Shapes:
        - **input:** ``x (*, irreps_in.dim)``, ``attr (*, irreps_attr.dim)``
        - **output:** ``(*, irreps_out.dim)``
    """

    def __init__(self, irreps_in: o3.Irreps, irreps_attr: o3.Irreps, irreps_out: o3.Irreps,
                 init_std: float | None = None) -> None:
        super().__init__()
        irreps_in, irreps_attr, irreps_out = o3.Irreps(irreps_in), o3.Irreps(irreps_attr), o3.Irreps(irreps_out)
        alg_x = IrrepsRep(irreps_in).lie_algebra(torch.float64)
        alg_a = IrrepsRep(irreps_attr).lie_algebra(torch.float64)
        eye_x, eye_a = torch.eye(irreps_in.dim, dtype=torch.float64), torch.eye(irreps_attr.dim, dtype=torch.float64)
        algebra_in = torch.stack([torch.kron(alg_x[k], eye_a) + torch.kron(eye_x, alg_a[k]) for k in range(3)])
        self.net = LinearBranch(irreps_in.dim * irreps_attr.dim, irreps_out.dim,
                                algebra_in.to(torch.get_default_dtype()), IrrepsRep(irreps_out).lie_algebra(),
                                init_std=init_std)

    def reset_parameters(self) -> None:
        """Re-initialise the parameters."""
        self.net.reset_parameters()

    def forward(self, x: torch.Tensor, attr: torch.Tensor) -> torch.Tensor:
        """Apply the layer; see the class docstring for shapes."""
        return self.net((x[..., :, None] * attr[..., None, :]).flatten(-2))


class SEGNNLayer(nn.Module):
    r"""One SEGNN message-passing layer (SEGNN eqs. 8–9), relaxed as in CR's code.

    .. math::
        m_{ij} = \phi_m(\phi_m'(h_i \oplus h_j \oplus s_{ij}, a_{ij}), a_{ij}), \quad
        u = \phi_1(h_i \oplus \textstyle\sum_j m_{ij}, a_i) + \gamma_1 W_1 (h_i \oplus \sum_j m_{ij}), \quad
        h_i' = h_i + \phi_2(u, a_i) + \gamma_2 W_2 u.

    With ``placement="ace"`` the update is strict and both message sub-layers are relaxed instead,
    :math:`\phi_m(z, a) + \gamma W\,\mathrm{vec}(z \otimes a)` (:class:`SEGNNProductBranch`).

    Edges point from ``edge_index[1]`` (sender j) to ``edge_index[0]`` (receiver i).

    Args:
        irreps_h (Irreps): Hidden irreps.
        irreps_edge_attr, irreps_node_attr (Irreps): Steerable edge and node attributes.
        irreps_msg (Irreps): Extra invariant message features (e.g. ``2x0e``).
        relaxed (bool, optional): Wrap both update sub-layers in a HomotopicLayer (default: :obj:`True`).
        gamma_init (float, optional): Initial γ (default: :obj:`1.0`).
        neq_init_std (float, optional): Std of W's init; CR uses 1e-4 (default: :obj:`None`).
        placement (str, optional): ``"cr"`` (γ W on the two update sub-layers) or ``"ace"`` (γ W(z ⊗ a)
            on the two message sub-layers) (default: :obj:`"cr"`).
        weight_init, weight_scaling, bias_init: How every :class:`SteerableLinear` draws and stores its
            weights (see there).

    Shapes:
        - **input:** ``h (|V|, irreps_h.dim)``, ``edge_index (2, |E|)``, ``edge_attr (|E|, ·)``,
          ``node_attr (|V|, ·)``, ``msg (|E|, irreps_msg.dim)``
        - **output:** ``(|V|, irreps_h.dim)``
    """

    def __init__(
        self,
        irreps_h: o3.Irreps,
        irreps_edge_attr: o3.Irreps,
        irreps_node_attr: o3.Irreps,
        irreps_msg: o3.Irreps,
        relaxed: bool = True,
        gamma_init: float = 1.0,
        neq_init_std: float | None = None,
        placement: str = "cr",
        *,
        weight_init: str = "normal",
        weight_scaling: bool = False,
        bias_init: str = "zero",
    ) -> None:
        super().__init__()
        if placement not in PLACEMENTS:
            listed = ", ".join(map(repr, PLACEMENTS))
            raise ValueError(f"Expected 'placement' to be one of {listed} (got {placement!r})")
        irreps_h = o3.Irreps(irreps_h)
        msg_in = irreps_h + irreps_h + o3.Irreps(irreps_msg)  # [h_i, h_j, s_ij], not regrouped
        upd_in = irreps_h + irreps_h  # [h_i, Σ_j m_ij]
        init = dict(weight_init=weight_init, weight_scaling=weight_scaling, bias_init=bias_init)
        msg1: nn.Module = SteerableLinear(msg_in, irreps_h, irreps_edge_attr, gate=True, **init)
        msg2: nn.Module = SteerableLinear(irreps_h, irreps_h, irreps_edge_attr, gate=True, **init)
        upd1: nn.Module = SteerableLinear(upd_in, irreps_h, irreps_node_attr, gate=True, **init)
        upd2: nn.Module = SteerableLinear(irreps_h, irreps_h, irreps_node_attr, **init)
        if relaxed and placement == "cr":
            upd1 = HomotopicLayer(upd1, SEGNNBranch(upd_in, irreps_h, neq_init_std), gamma_init)
            upd2 = HomotopicLayer(upd2, SEGNNBranch(irreps_h, irreps_h, neq_init_std), gamma_init)
        if relaxed and placement == "ace":
            msg1 = HomotopicLayer(msg1, SEGNNProductBranch(msg_in, irreps_edge_attr, irreps_h, neq_init_std),
                                  gamma_init)
            msg2 = HomotopicLayer(msg2, SEGNNProductBranch(irreps_h, irreps_edge_attr, irreps_h, neq_init_std),
                                  gamma_init)
        self.message_layer_1, self.message_layer_2 = msg1, msg2
        self.update_layer_1, self.update_layer_2 = upd1, upd2

    def reset_parameters(self) -> None:
        """Re-initialise the parameters."""
        for module in self.modules():
            if isinstance(module, SteerableLinear | SEGNNBranch | SEGNNProductBranch):
                module.reset_parameters()

    def forward(
        self,
        h: torch.Tensor,
        edge_index: torch.Tensor,
        edge_attr: torch.Tensor,
        node_attr: torch.Tensor,
        msg: torch.Tensor,
    ) -> torch.Tensor:
        """Apply the layer; see the class docstring for shapes."""
        row, col = edge_index
        m = torch.cat([h[row], h[col], msg], dim=-1)
        m = self.message_layer_2(self.message_layer_1(m, edge_attr), edge_attr)
        inp = torch.cat([h, segment_sum(m, row, h.shape[0])], dim=-1)
        update = self.update_layer_1(inp, node_attr)
        update = self.update_layer_2(update, node_attr)
        return h + update


def nbody_segnn_inputs(
    loc: torch.Tensor,
    vel: torch.Tensor,
    charges: torch.Tensor,
    edge_index: torch.Tensor,
    batch: torch.Tensor | None = None,
    lmax_attr: int = 1,
    *,
    edge_vector: str = "x_i-x_j",
    distance: str = "squared",
    attr_scalar: float | None = None,
) -> tuple[torch.Tensor, ...]:
    r"""SEGNN N-body encoding ([CR-code], SPEC §4.1): the arguments of :meth:`SEGNN.forward`.

    Node features ``[x_i − \bar x, v_i, ‖v_i‖]`` (``2x1o + 1x0e``, :math:`\bar x` the graph's centroid),
    edge attributes ``Y(r_ij)``, node attributes ``mean_j Y(r_ij) + Y(v_i)`` (``Y``: spherical harmonics
    up to ``lmax_attr``, normalised input, integral normalisation), message scalars ``[d_ij, q_i q_j]``.

    Args:
        loc (Tensor): Positions ``(|V|, 3)``.
        vel (Tensor): Velocities ``(|V|, 3)``.
        charges (Tensor): Charges ``(|V|, 1)``.
        edge_index (Tensor): ``(2, |E|)``, row = receiver i, col = sender j.
        batch (Tensor, optional): Graph index of each node ``(|V|,)``; :obj:`None` for one graph.
        lmax_attr (int, optional): Largest harmonic degree of the attributes (default: :obj:`1`).
        edge_vector (str, optional): :math:`r_{ij} = x_i - x_j` (``"x_i-x_j"``) or :math:`x_j - x_i`
            (``"x_j-x_i"``, SEGNN's code); the two differ in the sign of the odd harmonics, and so in
            how ``mean_j Y(r_ij)`` adds to ``Y(v_i)`` (default: :obj:`"x_i-x_j"`).
        distance (str, optional): :math:`d_{ij} = \|r_{ij}\|^2` (``"squared"``) or :math:`\|r_{ij}\|`
            (``"norm"``, SEGNN's code) (default: :obj:`"squared"`).
        attr_scalar (float, optional): Replace the ``0e`` part of the node attributes by this constant
            (SEGNN's code sets 1.0); :obj:`None` keeps ``2 Y_0 = 1/√π`` (default: :obj:`None`).
    """
    check_choice("edge_vector", edge_vector, EDGE_VECTORS)
    check_choice("distance", distance, DISTANCES)
    row, col = edge_index
    n = loc.shape[0]
    centre = graph_mean(loc, batch)  # no host sync
    rel = loc[row] - loc[col] if edge_vector == "x_i-x_j" else loc[col] - loc[row]
    irreps_attr = o3.Irreps.spherical_harmonics(lmax_attr)
    edge_attr = o3.spherical_harmonics(irreps_attr, rel, normalize=True, normalization="integral")
    deg = segment_sum(torch.ones_like(row, dtype=loc.dtype), row, n).clamp(min=1)
    node_attr = segment_sum(edge_attr, row, n) / deg[:, None]
    node_attr = node_attr + o3.spherical_harmonics(irreps_attr, vel, normalize=True, normalization="integral")
    if attr_scalar is not None:
        node_attr = torch.cat([torch.full_like(node_attr[:, :1], float(attr_scalar)), node_attr[:, 1:]], dim=-1)
    h = torch.cat([loc - centre, vel, vel.norm(dim=-1, keepdim=True)], dim=-1)
    dist2 = (rel * rel).sum(-1, keepdim=True)
    msg = torch.cat([dist2 if distance == "squared" else dist2.sqrt(), charges[row] * charges[col]], dim=-1)
    return h, edge_index, edge_attr, node_attr, msg


class SEGNN(nn.Module):
    r"""Compact SEGNN for N-body (Brandstetter et al. 2022) with CR's relaxed node updates (CR eq. 2).

    ``h ← φ_emb(h, a)``; ``L`` :class:`SEGNNLayer` s; ``y = φ_out2(φ_out1(h, a), a)`` (``1x1o``: the
    predicted displacement, so the N-body prediction is ``loc + y``). Relaxed layers hold
    ``update_layer_{1,2}`` (``message_layer_{1,2}`` with ``placement="ace"``) as
    :class:`~constrained_eq.homotopy.HomotopicLayer` s; replacing each by its ``eq`` gives the
    state_dict keys of ``relaxed=False``. With all ``γ = 0`` it is E(3) equivariant.

    Args:
        hidden_nf (int, optional): Scalar width the hidden irreps are balanced against (default: :obj:`64`,
            giving ``32x0e+32x1o``).
        n_layers (int, optional): Message-passing layers (default: :obj:`4`).
        lmax_h (int, optional): Hidden irreps up to ``lmax_h`` (default: :obj:`1`).
        lmax_attr (int, optional): Attribute harmonics up to ``lmax_attr`` (default: :obj:`1`).
        relaxed (bool, optional): Add γ·W to both update sub-layers (default: :obj:`True`).
        gamma_init (float, optional): Initial γ (default: :obj:`1.0`).
        neq_init_std (float, optional): Std of W's init; CR uses 1e-4 (default: :obj:`None`).
        placement (str, optional): Where the branches go: ``"cr"`` (CR's code: the two node-update
            sub-layers, 344,040 parameters at the defaults) or ``"ace"`` (the two message sub-layers,
            :class:`SEGNNProductBranch`, 937,960 parameters as ACE's Table 3) (default: :obj:`"cr"`).
        irreps_in, irreps_msg, irreps_out (str, optional): Defaults ``2x1o+1x0e``, ``2x0e``, ``1x1o``.
        weight_init, weight_scaling, bias_init: How every :class:`SteerableLinear` draws and stores its
            weights. SEGNN's own code uses ``"uniform"``, ``True``, ``"uniform"``
            (see ``docs/results/reference-parity.md``) (defaults: ``"normal"``, :obj:`False`, ``"zero"``).
        edge_vector, distance, attr_scalar: The N-body encoding, kept in :attr:`input_options` for
            :func:`nbody_segnn_inputs` (defaults: ``"x_i-x_j"``, ``"squared"``, :obj:`None`).

    Shapes:
        - **input:** as returned by :func:`nbody_segnn_inputs`
        - **output:** ``(|V|, irreps_out.dim)``; γ: ``(2 · n_layers,)``
    """

    def __init__(
        self,
        hidden_nf: int = 64,
        n_layers: int = 4,
        lmax_h: int = 1,
        lmax_attr: int = 1,
        relaxed: bool = True,
        gamma_init: float = 1.0,
        neq_init_std: float | None = None,
        placement: str = "cr",
        *,
        irreps_in: str = "2x1o+1x0e",
        irreps_msg: str = "2x0e",
        irreps_out: str = "1x1o",
        weight_init: str = "normal",
        weight_scaling: bool = False,
        bias_init: str = "zero",
        edge_vector: str = "x_i-x_j",
        distance: str = "squared",
        attr_scalar: float | None = None,
    ) -> None:
        super().__init__()
        check_positive_ints(hidden_nf=hidden_nf, n_layers=n_layers, lmax_attr=lmax_attr)
        check_choice("edge_vector", edge_vector, EDGE_VECTORS)
        check_choice("distance", distance, DISTANCES)
        if attr_scalar is not None and not isinstance(attr_scalar, int | float):
            raise ValueError(f"Expected 'attr_scalar' to be None or a number (got {attr_scalar!r})")
        self.input_options = {"lmax_attr": lmax_attr, "edge_vector": edge_vector, "distance": distance,
                              "attr_scalar": attr_scalar}
        init = dict(weight_init=weight_init, weight_scaling=weight_scaling, bias_init=bias_init)
        if not isinstance(lmax_h, int) or lmax_h < 0:
            raise ValueError(f"Expected 'lmax_h' to be a non-negative int (got {lmax_h!r})")
        self.relaxed = bool(relaxed)
        attr = o3.Irreps.spherical_harmonics(lmax_attr)
        self.irreps_hidden = balanced_irreps(hidden_nf, lmax_h, attr)
        self.embedding = SteerableLinear(o3.Irreps(irreps_in), self.irreps_hidden, attr, **init)
        self.layers = nn.ModuleList(
            SEGNNLayer(self.irreps_hidden, attr, attr, o3.Irreps(irreps_msg), relaxed, gamma_init, neq_init_std,
                       placement, **init)
            for _ in range(n_layers)
        )
        self.pre_pool1 = SteerableLinear(self.irreps_hidden, self.irreps_hidden, attr, gate=True, **init)
        self.pre_pool2 = SteerableLinear(self.irreps_hidden, o3.Irreps(irreps_out), attr, **init)

    def reset_parameters(self) -> None:
        """Re-initialise the parameters."""
        for module in (self.embedding, *self.layers, self.pre_pool1, self.pre_pool2):
            module.reset_parameters()

    def forward(
        self,
        h: torch.Tensor,
        edge_index: torch.Tensor,
        edge_attr: torch.Tensor,
        node_attr: torch.Tensor,
        msg: torch.Tensor,
    ) -> torch.Tensor:
        """Apply the layer; see the class docstring for shapes."""
        h = self.embedding(h, node_attr)
        for layer in self.layers:
            h = layer(h, edge_index, edge_attr, node_attr, msg)
        return self.pre_pool2(self.pre_pool1(h, node_attr), node_attr)
