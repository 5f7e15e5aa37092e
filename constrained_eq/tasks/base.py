"""What a task provides to ``ceq``: data loaders, the loss, a test metric and its models.

A task is a small class: its options and the options of each of its models are declared with their
defaults (``option_defaults``, ``model_options``), so a problem file is checked against them before
any data is built.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any, ClassVar, NamedTuple

import torch
from torch import nn

from constrained_eq.homotopy import is_relaxed, project

__all__ = ["Task", "Loaders", "projected", "random_rotation"]


class Loaders(NamedTuple):
    """The train (shuffled with a seeded ``torch.Generator``), validation and test loaders."""

    train: Any
    val: Any
    test: Any


class Task:
    """Base class of a task. Subclasses set the class attributes and fill in the methods.

    Attributes:
        name: The task's name in problem files.
        option_defaults: The task's options and their defaults.
        model_options: For each model name, its options and their defaults.
        metric_name: Name of :meth:`metric` in tables and ``metrics.json``.
        supports_augmentation: :meth:`augment` applies a random group element to a batch.
        higher_is_better: Metrics (by name) for which larger is better; ``evaluation.select`` on one of
            them picks the epoch with the largest value.
    """

    name: ClassVar[str]
    option_defaults: ClassVar[Mapping[str, Any]] = {}
    model_options: ClassVar[Mapping[str, Mapping[str, Any]]] = {}
    metric_name: ClassVar[str] = "mse"
    supports_augmentation: ClassVar[bool] = False
    higher_is_better: ClassVar[tuple[str, ...]] = ()

    def __init__(self, **options: Any) -> None:
        unknown = sorted(set(options) - set(self.option_defaults))
        if unknown:
            allowed = ", ".join(repr(k) for k in self.option_defaults) or "none"
            raise ValueError(f"Task {self.name!r}: unknown options {unknown}; allowed: {allowed}")
        self.options = {**self.option_defaults, **options}

    def loaders(self, seed: int, batch_size: int) -> Loaders:
        """Build the loaders; the train loader shuffles with ``torch.Generator().manual_seed(seed)``."""
        raise NotImplementedError

    def loss(self, output: Any, batch: Any) -> torch.Tensor:
        """Training loss of a batch (scalar)."""
        raise NotImplementedError

    def metric(self, output: Any, batch: Any) -> torch.Tensor:
        """Test metric of a batch (scalar mean over the batch)."""
        return self.loss(output, batch)

    def batch_summary(self, output: Any, batch: Any) -> Any:
        """What :meth:`aggregate` needs of one evaluated batch (default: nothing, ``None``).

        For metrics that are not means of per-batch values (e.g. a mean per-class accuracy), keep
        the summary small: predictions and labels, not the inputs.
        """
        return None

    def aggregate(self, summaries: list[Any]) -> dict[str, float]:
        """Metrics over a whole loader from the :meth:`batch_summary` of each batch (default: none)."""
        return {}

    def model(self, name: str, **options: Any) -> nn.Module:
        """Build model ``name`` with ``options``."""
        raise NotImplementedError

    def forward(self, model: nn.Module, batch: Any) -> Any:
        """Run ``model`` on ``batch``."""
        return model(batch[0])

    def augment(self, batch: Any) -> Any:
        """Apply a random group element (drawn from torch's global RNG) to inputs and targets."""
        raise NotImplementedError(f"Task {self.name!r} does not support augmentation")

    def equivariance_error(self, model: nn.Module, loader: Any) -> float | None:
        """Relative equivariance error of ``model`` on ``loader`` (``None`` if the task has none)."""
        return None


def projected(model: nn.Module) -> nn.Module:
    """A copy of ``model`` computing f_{θ,0}: every :class:`HomotopicLayer` replaced by its f_eq."""
    return project(model, inplace=False) if is_relaxed(model) else copy.deepcopy(model)


def random_rotation(generator: torch.Generator | None = None, dtype: torch.dtype = torch.float32,
                    device: torch.device | None = None) -> torch.Tensor:
    """A uniformly random 3×3 rotation matrix (QR of a Gaussian matrix, det = +1)."""
    q, r = torch.linalg.qr(torch.randn(3, 3, generator=generator, dtype=torch.float64))
    q = q * torch.sign(torch.diagonal(r))
    if torch.det(q) < 0:
        q[:, 0] = -q[:, 0]
    return q.to(dtype=dtype, device=device)
