r"""SEGNN's steerable layer :math:`y = W(x \otimes a) + b`, its weight storage and initialisation."""

from __future__ import annotations

import torch
from e3nn import o3
from e3nn.nn import Gate
from torch import nn

__all__ = ["BIAS_INITS", "WEIGHT_INITS", "SteerableLinear", "balanced_irreps", "check_choice"]


def _tp_weight_count(irreps_in1: o3.Irreps, irreps_in2: o3.Irreps, irreps_out: o3.Irreps) -> int:
    """Number of weights of ``FullyConnectedTensorProduct(irreps_in1, irreps_in2, irreps_out)``."""
    return sum(m1 * m2 * mo for m1, i1 in irreps_in1 for m2, i2 in irreps_in2 for mo, io in irreps_out if io in i1 * i2)


def balanced_irreps(hidden_nf: int, lmax_h: int, attr_irreps: str | o3.Irreps) -> o3.Irreps:
    """SEGNN's weight-balanced hidden irreps (64 scalars with ``0e+1o`` attributes → ``32x0e+32x1o``).

    The smallest ``n × (0e + 1o + 2e + …)`` up to ``lmax_h`` whose steerable layer has at least as many
    weights as a ``hidden_nf``-scalar one.
    """
    attr = o3.Irreps(attr_irreps)
    scalar = o3.Irreps(f"{hidden_nf}x0e")
    target = _tp_weight_count(scalar, attr, scalar)
    n = 1
    while True:
        irreps = o3.Irreps([(n, (deg, (-1) ** deg)) for deg in range(lmax_h + 1)])
        if _tp_weight_count(irreps, attr, irreps) >= target:
            return irreps
        n += 1


WEIGHT_INITS = ("normal", "uniform")
BIAS_INITS = ("zero", "uniform")


def _fan_in_per_output(tp: o3.TensorProduct) -> list[int]:
    r"""Fan-in of each output irrep block: :math:`\sum` of ``mul_1 · mul_2`` over the paths into it."""
    fan_in = [0] * len(tp.irreps_out)
    for ins in tp.instructions:
        fan_in[ins.i_out] += tp.irreps_in1[ins.i_in1].mul * tp.irreps_in2[ins.i_in2].mul
    return fan_in


def check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    """Raise ``ValueError`` naming ``name`` and the choices when ``value`` is not one of them."""
    if value not in choices:
        raise ValueError(f"Expected {name!r} to be one of {', '.join(map(repr, choices))} (got {value!r})")


class SteerableLinear(nn.Module):
    r"""Steerable layer :math:`y = W(x \otimes a) + b` (SEGNN eq. 7), optionally followed by a gate.

    A fully connected Clebsch–Gordan tensor product of the features with the steerable attributes,
    a bias on the scalar (``0e``) outputs, and with ``gate=True`` a swish/sigmoid gate (SEGNN's
    ``O3TensorProductSwishGate``).

    e3nn normalises each path by :math:`1/\sqrt{\text{fan-in}}` of its output block, so ``W`` is the
    *effective* weight. Three choices set how it is drawn and stored:

    * ``weight_init``: effective weights :math:`N(0, 1)` (``"normal"``, e3nn's default) or
      :math:`U(-1, 1)` (``"uniform"``, as ``torch.nn.Linear`` and SEGNN's own code).
    * ``weight_scaling``: with ``True`` the parameter is :math:`\theta = W/\sqrt{\text{fan-in}}` and the
      output block is multiplied back by :math:`\sqrt{\text{fan-in}}` (SEGNN's ``tp_rescale``). The
      function at initialisation is the same; an Adam step of size ``lr`` on θ moves ``W`` by
      :math:`\sqrt{\text{fan-in}}\,\mathrm{lr}` (8–11× at N-body widths), like a per-layer learning rate.
    * ``bias_init``: biases 0 (``"zero"``) or :math:`U(\pm 1/\sqrt{\text{fan-in}})` (``"uniform"``).

    The scale is one number per output irrep block, so the layer stays exactly equivariant.

    Args:
        irreps_in (Irreps): Input irreps.
        irreps_out (Irreps): Output irreps (after the gate).
        irreps_attr (Irreps): Attribute irreps.
        gate (bool, optional): Apply the gated nonlinearity (default: :obj:`False`).
        weight_init (str, optional): ``"normal"`` or ``"uniform"`` (default: :obj:`"normal"`).
        weight_scaling (bool, optional): Store ``W/√fan_in`` (default: :obj:`False`).
        bias_init (str, optional): ``"zero"`` or ``"uniform"`` (default: :obj:`"zero"`).

    Shapes:
        - **input:** ``x (*, irreps_in.dim)``, ``attr (*, irreps_attr.dim)``
        - **output:** ``(*, irreps_out.dim)``
    """

    def __init__(self, irreps_in: o3.Irreps, irreps_out: o3.Irreps, irreps_attr: o3.Irreps, gate: bool = False,
                 weight_init: str = "normal", weight_scaling: bool = False, bias_init: str = "zero"):
        super().__init__()
        check_choice("weight_init", weight_init, WEIGHT_INITS)
        check_choice("bias_init", bias_init, BIAS_INITS)
        self.weight_init, self.weight_scaling, self.bias_init = weight_init, bool(weight_scaling), bias_init
        self.irreps_in, self.irreps_out = o3.Irreps(irreps_in), o3.Irreps(irreps_out)
        self.gate: nn.Module | None = None
        tp_out = self.irreps_out
        if gate:
            scalars = o3.Irreps([(m, ir) for m, ir in self.irreps_out if ir.l == 0])
            gated = o3.Irreps([(m, ir) for m, ir in self.irreps_out if ir.l > 0])
            gates = o3.Irreps(f"{gated.num_irreps}x0e")
            self.gate = Gate(scalars, [nn.functional.silu] * len(scalars), gates, [torch.sigmoid] * len(gates), gated)
            tp_out = self.gate.irreps_in
        self.tp = o3.FullyConnectedTensorProduct(self.irreps_in, irreps_attr, tp_out, shared_weights=True)
        fan_in = _fan_in_per_output(self.tp)
        root_fan = torch.cat([torch.full((sl.stop - sl.start,), float(f) ** 0.5)
                              for f, sl in zip(fan_in, tp_out.slices(), strict=True)])
        idx = [
            i
            for (mul, ir), sl in zip(tp_out, tp_out.slices(), strict=True)
            if ir == o3.Irrep("0e")
            for i in range(sl.start, sl.stop)
        ]
        self.register_buffer("bias_index", torch.tensor(idx, dtype=torch.long), persistent=False)
        self.register_buffer("root_fan_in", root_fan, persistent=False)
        self.bias = nn.Parameter(torch.zeros(len(idx)))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Re-initialise the parameters (see the class docstring for the distributions)."""
        with torch.no_grad():
            if self.weight_init == "normal":
                self.tp.weight.normal_()
            else:
                self.tp.weight.uniform_(-1.0, 1.0)
            if self.weight_scaling:
                starts = [sl.start for sl in self.tp.irreps_out.slices()]
                for weight, ins in zip(self.tp.weight_views(), self.tp.instructions, strict=True):
                    weight.div_(self.root_fan_in[starts[ins.i_out]])
            if self.bias_init == "zero":
                self.bias.zero_()
            else:
                bound = 1.0 / self.root_fan_in[self.bias_index]
                self.bias.copy_((2 * torch.rand_like(self.bias) - 1) * bound)

    def forward(self, x: torch.Tensor, attr: torch.Tensor) -> torch.Tensor:
        """Apply the layer; see the class docstring for shapes."""
        out = self.tp(x, attr)
        if self.weight_scaling:
            out = out * self.root_fan_in
        out = out.index_add(-1, self.bias_index, self.bias.expand(out.shape[:-1] + self.bias.shape))
        return self.gate(out) if self.gate is not None else out
