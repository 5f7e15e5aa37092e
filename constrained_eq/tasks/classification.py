"""A synthetic binary-classification task for constraints that are not about equivariance.

Inputs x ∈ R^d are Gaussian; the label is 1 when a fixed random quadratic score is positive, with a
fraction of labels flipped. Models are plain MLPs, so the problem files can put per-layer bounds on
them (spectral norm, L1 budget) or an output-rate bound (false-positive rate).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from constrained_eq.tasks.base import Loaders, Task

__all__ = ["Classification", "MLP"]


class MLP(nn.Module):
    """``Linear → ReLU → … → Linear(1)``: logits of shape ``(N,)``."""

    def __init__(self, in_features: int = 8, hidden: int = 64, n_layers: int = 3) -> None:
        super().__init__()
        sizes = [in_features] + [hidden] * (n_layers - 1)
        layers: list[nn.Module] = []
        for a, b in zip(sizes[:-1], sizes[1:], strict=True):
            layers += [nn.Linear(a, b), nn.ReLU()]
        layers.append(nn.Linear(sizes[-1], 1))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).squeeze(-1)


def _make(n: int, d: int, noise: float, generator: torch.Generator, w: torch.Tensor) -> TensorDataset:
    x = torch.randn(n, d, generator=generator)
    score = (x @ w[0]) + 0.5 * (x @ w[1]) ** 2 - 0.5
    y = (score > 0).float()
    flip = torch.rand(n, generator=generator) < noise
    y[flip] = 1 - y[flip]
    return TensorDataset(x, y)


class Classification(Task):
    """Synthetic binary classification (BCE loss; metric: error rate)."""

    name = "classification"
    option_defaults = {"n_train": 2000, "n_val": 500, "n_test": 500, "dim": 8, "label_noise": 0.05, "data_seed": 0}
    model_options = {"mlp": {"hidden": 64, "n_layers": 3}}
    metric_name = "error_rate"

    def loaders(self, seed: int, batch_size: int) -> Loaders:
        o = self.options
        generator = torch.Generator().manual_seed(o["data_seed"])
        w = torch.randn(2, o["dim"], generator=generator) / o["dim"] ** 0.5
        splits = [_make(o[k], o["dim"], o["label_noise"], generator, w) for k in ("n_train", "n_val", "n_test")]
        shuffle = torch.Generator().manual_seed(seed)
        return Loaders(
            DataLoader(splits[0], batch_size=batch_size, shuffle=True, generator=shuffle),
            DataLoader(splits[1], batch_size=batch_size),
            DataLoader(splits[2], batch_size=batch_size),
        )

    def loss(self, output: Any, batch: Any) -> torch.Tensor:
        return F.binary_cross_entropy_with_logits(output, batch[1])

    def metric(self, output: Any, batch: Any) -> torch.Tensor:
        return ((output > 0).float() != batch[1]).float().mean()

    def model(self, name: str, **options: Any) -> nn.Module:
        if name != "mlp":
            raise ValueError(f"Task 'classification': expected 'model.name' to be 'mlp' (got {name!r})")
        return MLP(self.options["dim"], **options)
