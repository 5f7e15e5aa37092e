r"""``toy_rotation``: a tiny SO(3) task on sets of 3-D points that trains in seconds.

Inputs are ``k`` points :math:`x \in \mathbb{R}^{k \times 3}`, :math:`x_j \sim N(0, I)`; the target is

.. math::
    y_i = \sum_j A_{ij} x_j + \tfrac12 \tanh(\|x_i\|)\, x_i + \beta\, \|x_i\|\, e_z,

SO(3)-equivariant for :math:`\beta = 0`; ``breaking`` = β adds a term along a fixed axis that no
equivariant model can fit. The model (``vector_net``) stacks relaxed layers
``HomotopicLayer(VectorLinear, VectorBranch)`` with an equivariant norm gate between them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from constrained_eq.homotopy import HomotopicLayer, LinearBranch
from constrained_eq.symmetry.haar import random_rotation
from constrained_eq.tasks.base import Loaders, Task

__all__ = ["ToyRotation", "VectorNet", "VectorLinear", "VectorBranch", "so3_generators"]


def so3_generators() -> torch.Tensor:
    """The so(3) basis L_a with (L_a)_{bc} = −ε_{abc}, shape ``(3, 3, 3)``."""
    eps = torch.zeros(3, 3, 3)
    for a, b, c in ((0, 1, 2), (1, 2, 0), (2, 0, 1)):
        eps[a, b, c], eps[a, c, b] = 1.0, -1.0
    return -eps


def _vector_algebra(channels: int) -> torch.Tensor:
    """dρ of ``channels`` stacked 3-vectors flattened row-major: ``kron(I, L_a)``, shape ``(3, 3c, 3c)``."""
    return torch.stack([torch.kron(torch.eye(channels), g) for g in so3_generators()])


class VectorLinear(nn.Module):
    """Equivariant channel mixing of vectors: ``y[o] = Σ_i W[o, i] x[i]`` (shapes ``(B, c, 3)``)."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Re-initialise the weights."""
        nn.init.normal_(self.weight, std=self.weight.shape[1] ** -0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the layer."""
        return torch.einsum("oi,bid->bod", self.weight, x)


class VectorBranch(nn.Module):
    """Unconstrained f_neq on the flattened vectors, a :class:`LinearBranch` carrying the so(3) action."""

    def __init__(self, in_channels: int, out_channels: int, init_std: float | None = None) -> None:
        super().__init__()
        self.out_channels = out_channels
        self.net = LinearBranch(3 * in_channels, 3 * out_channels, _vector_algebra(in_channels),
                                _vector_algebra(out_channels), init_std=init_std)

    def reset_parameters(self) -> None:
        """Re-initialise the weights."""
        self.net.reset_parameters()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the layer."""
        return self.net(x.reshape(x.shape[0], -1)).reshape(x.shape[0], self.out_channels, 3)


class VectorGate(nn.Module):
    """Equivariant nonlinearity ``x_c · sigmoid(‖x_c‖ − b_c)`` per channel."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(x.norm(dim=-1) - self.bias)[..., None]


class VectorNet(nn.Module):
    """``n_layers`` vector layers (relaxed: f_eq + γ f_neq) with gates between them.

    Args:
        points (int): Number of input/output vectors k.
        hidden (int, optional): Hidden vector channels (default: :obj:`8`).
        n_layers (int, optional): Number of layers (default: :obj:`3`).
        relaxed (bool, optional): Wrap each layer in a HomotopicLayer (default: :obj:`True`).
        gamma_init (float, optional): Initial γ (default: :obj:`1.0`).
        neq_init_std (float, optional): Branch weight init std (default: torch's).
    """

    def __init__(self, points: int, hidden: int = 8, n_layers: int = 3, relaxed: bool = True,
                 gamma_init: float = 1.0, neq_init_std: float | None = None) -> None:
        super().__init__()
        sizes = [points] + [hidden] * (n_layers - 1) + [points]
        layers: list[nn.Module] = []
        for c_in, c_out in zip(sizes[:-1], sizes[1:], strict=True):
            layer: nn.Module = VectorLinear(c_in, c_out)
            if relaxed:
                layer = HomotopicLayer(layer, VectorBranch(c_in, c_out, neq_init_std), gamma_init)
            layers.append(layer)
        self.layers = nn.ModuleList(layers)
        self.gates = nn.ModuleList(VectorGate(c) for c in sizes[1:-1])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the layer."""
        for index, layer in enumerate(self.layers):
            x = layer(x)
            if index < len(self.gates):
                x = self.gates[index](x)
        return x


class ToyRotation(Task):
    """The ``toy_rotation`` task (see the module docstring).

    Options:
        points (int): Vectors per sample k (default: 4).
        n_train, n_val, n_test (int): Split sizes (default: 512, 128, 128).
        breaking (float): Symmetry-breaking strength β (default: 0.0).
        data_seed (int): Seed of the data and of A (default: 0).
    """

    name = "toy_rotation"
    option_defaults = {"points": 4, "n_train": 512, "n_val": 128, "n_test": 128, "breaking": 0.0, "data_seed": 0}
    model_options = {"vector_net": {"hidden": 8, "n_layers": 3, "relaxed": True, "gamma_init": 1.0,
                                    "neq_init_std": None}}
    metric_name = "mse"
    supports_augmentation = True

    @classmethod
    def data_bytes(cls, options: Mapping[str, Any]) -> int:
        """float32: the ``points × points`` mixing matrix, and x and y of ``(n, points, 3)`` in every split."""
        k, n = int(options["points"]), sum(int(options[f"n_{split}"]) for split in ("train", "val", "test"))
        return 4 * (k * k + 2 * 3 * n * k)

    def _data(self) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        opts = self.options
        generator = torch.Generator().manual_seed(int(opts["data_seed"]))
        k = int(opts["points"])
        mixing = torch.randn(k, k, generator=generator) / k**0.5
        axis = torch.tensor([0.0, 0.0, 1.0])
        out = {}
        for split in ("train", "val", "test"):
            x = torch.randn(int(opts[f"n_{split}"]), k, 3, generator=generator)
            norm = x.norm(dim=-1, keepdim=True)
            y = torch.einsum("ij,bjd->bid", mixing, x) + 0.5 * torch.tanh(norm) * x
            y = y + float(opts["breaking"]) * norm * axis
            out[split] = (x, y)
        return out

    def loaders(self, seed: int, batch_size: int) -> Loaders:
        """Build the train (seeded shuffle), validation and test loaders."""
        data = self._data()
        generator = torch.Generator().manual_seed(int(seed))
        train = DataLoader(TensorDataset(*data["train"]), batch_size=batch_size, shuffle=True, generator=generator)
        val = DataLoader(TensorDataset(*data["val"]), batch_size=256)
        test = DataLoader(TensorDataset(*data["test"]), batch_size=256)
        return Loaders(train, val, test)

    def loss(self, output: torch.Tensor, batch: Any) -> torch.Tensor:
        """Mean squared error against the target vectors."""
        return F.mse_loss(output, batch[1])

    def model(self, name: str, **options: Any) -> nn.Module:
        """Build the named model with its options."""
        if name != "vector_net":
            raise ValueError(f"Expected 'model.name' to be 'vector_net' (got {name!r})")
        return VectorNet(int(self.options["points"]), **options)

    def augment(self, batch: Any) -> Any:
        """Rotate inputs and targets by one random rotation."""
        x, y = batch
        rotation = random_rotation(dtype=x.dtype, device=x.device)
        return x @ rotation.T, y @ rotation.T

    def equivariance_error(self, model: nn.Module, loader: Any) -> float:
        """``E‖f(xRᵀ) − f(x)Rᵀ‖ / E‖f(x)‖`` over the loader, one fixed random R per batch (seed 0)."""
        return self.rotation_error(
            model, loader, lambda batch, rot: (batch[0] @ rot.T, *batch[1:]),
            lambda out, turned, rot, batch: ((turned - out @ rot.T).norm(dim=-1).sum(), out.norm(dim=-1).sum()))
