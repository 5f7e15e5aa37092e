r"""A generated fair-classification task: a rate constraint between two groups.

Each sample has features :math:`x \in \mathbb{R}^d`, a group :math:`a \in \{0, 1\}` (about 30 % in
group 1) and a label y. Group 1's features are shifted and its labels more often positive, so an
unconstrained classifier predicts positives at very different rates in the two groups. The model sees
``[x, a]``. Batches are ``(inputs, labels, groups)``.

The constraint is demographic parity within a margin, :math:`|r_0 - r_1| \le 0.05` with
:math:`r_g = P(\hat y = 1 \mid a = g)`, written as ``Inequality(target=positive_rate_gap, bound=0.05)``
on the two-element target :math:`(r_0 - r_1,\ r_1 - r_0)` with the sigmoid surrogate of the rates
(:func:`~constrained_eq.core.problem.targets.positive_rate_gap`). The test metric is the error rate; ``rate_gap``,
the gap of the hard decisions :math:`|\hat r_0 - \hat r_1|` over the whole split, is reported beside it.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from constrained_eq.tasks.base import Loaders, Task

__all__ = ["Fairness", "Logistic"]


class Logistic(nn.Module):
    """Logistic regression: logits ``w·z + b`` of shape ``(N,)``."""

    def __init__(self, in_features: int) -> None:
        super().__init__()
        self.linear = nn.Linear(in_features, 1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.linear(z).squeeze(-1)


def _make(n: int, d: int, generator: torch.Generator, w: torch.Tensor, group_share: float,
          shift: float) -> TensorDataset:
    a = (torch.rand(n, generator=generator) < group_share).float()
    x = torch.randn(n, d, generator=generator) + shift * a[:, None]
    logit = x @ w + 1.5 * a - 0.5
    y = (torch.rand(n, generator=generator) < torch.sigmoid(2.0 * logit)).float()
    return TensorDataset(torch.cat([x, a[:, None]], dim=1), y, a)


class Fairness(Task):
    """Generated binary classification with a protected group (BCE loss; metric: error rate)."""

    name = "fairness"
    option_defaults = {"n_train": 20000, "n_val": 30000, "n_test": 30000, "dim": 5, "group_share": 0.3,
                       "shift": 0.8, "data_seed": 0}
    model_options = {"logistic": {}}
    metric_name = "error_rate"

    def loaders(self, seed: int, batch_size: int) -> Loaders:
        o = self.options
        generator = torch.Generator().manual_seed(o["data_seed"])
        w = torch.randn(o["dim"], generator=generator) / o["dim"] ** 0.5
        splits = [_make(o[k], o["dim"], generator, w, o["group_share"], o["shift"])
                  for k in ("n_train", "n_val", "n_test")]
        shuffle = torch.Generator().manual_seed(seed)
        return Loaders(DataLoader(splits[0], batch_size=batch_size, shuffle=True, generator=shuffle),
                       DataLoader(splits[1], batch_size=batch_size), DataLoader(splits[2], batch_size=batch_size))

    def loss(self, output: Any, batch: Any) -> torch.Tensor:
        return F.binary_cross_entropy_with_logits(output, batch[1])

    def metric(self, output: Any, batch: Any) -> torch.Tensor:
        return ((output > 0).float() != batch[1]).float().mean()

    def batch_summary(self, output: Any, batch: Any) -> torch.Tensor:
        """Positives predicted and members, per group: ``(4,)`` sums."""
        positive, group = (output > 0).float(), batch[2]
        return torch.stack([(positive * (1 - group)).sum(), (1 - group).sum(), (positive * group).sum(), group.sum()])

    def aggregate(self, summaries: list[Any]) -> dict[str, float]:
        """``rate_gap``: :math:`|\\hat r_0 - \\hat r_1|` of the hard decisions over the whole split."""
        if not summaries:
            return {}
        s = torch.stack(summaries).sum(0)
        return {"rate_gap": float((s[0] / s[1].clamp(min=1) - s[2] / s[3].clamp(min=1)).abs())}

    def model(self, name: str, **options: Any) -> nn.Module:
        if name != "logistic":
            raise ValueError(f"Task 'fairness': expected 'model.name' to be 'logistic' (got {name!r})")
        return Logistic(self.options["dim"] + 1, **options)
