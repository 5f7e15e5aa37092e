"""What a task provides to ``ceq``: data loaders, the loss, a test metric and its models.

A task is a small class: its options and the options of each of its models are declared with their
defaults (``option_defaults``, ``model_options``), so a problem file is checked against them before
any data is built.
"""

from __future__ import annotations

import copy
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from typing import Any, ClassVar, NamedTuple

import torch
from torch import nn

from constrained_eq.homotopy import is_relaxed, project
from constrained_eq.symmetry.haar import random_rotation  # the one Haar sampler, re-exported for the tasks

__all__ = ["Task", "Loaders", "projected"]


class Loaders(NamedTuple):
    """The train (shuffled with a seeded ``torch.Generator``), validation and test loaders."""

    train: Any
    val: Any
    test: Any


class Task(ABC):
    """Base class of a task. Subclasses set the class attributes and fill in the methods.

    :meth:`loss` is abstract; :meth:`loaders` is needed to train (``ceq run``, :func:`~constrained_eq.fit`
    through a problem file) and :meth:`model` to name a built-in model (``model.name`` without an import
    path); the rest have defaults. Register a subclass with ``ceq.register_task`` to name it in problem files.

    Attributes:
        name: The task's name in problem files.
        option_defaults: The task's options and their defaults.
        option_choices: For some options, the tuple of values they may take (checked on construction).
        model_options: For each model name, its options and their defaults.
        metric_name: Name of :meth:`metric` in tables and ``metrics.json``.
        supports_augmentation: :meth:`augment` applies a random group element to a batch.
        higher_is_better: Metrics (by name) for which larger is better; ``evaluation.select`` on one of
            them picks the epoch with the largest value.
    """

    name: ClassVar[str]
    option_defaults: ClassVar[Mapping[str, Any]] = {}
    option_choices: ClassVar[Mapping[str, tuple[Any, ...]]] = {}
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
        for key, choices in self.option_choices.items():
            if self.options[key] not in choices:
                raise ValueError(f"Expected '{key}' to be one of {choices} (got {self.options[key]!r})")

    def loaders(self, seed: int, batch_size: int) -> Loaders:
        """Build the loaders; the train loader shuffles with ``torch.Generator().manual_seed(seed)``."""
        raise NotImplementedError(f"Task {_name(self)!r} defines no loaders(seed, batch_size); add one to train on it")

    @abstractmethod
    def loss(self, output: Any, batch: Any) -> torch.Tensor:
        """Training loss of a batch (scalar)."""

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
        raise NotImplementedError(f"Task {_name(self)!r} has no built-in models; name one as 'package.module:factory'")

    def forward(self, model: nn.Module, batch: Any) -> Any:
        """Run ``model`` on ``batch``."""
        return model(batch[0])

    def augment(self, batch: Any) -> Any:
        """Apply a random group element (drawn from torch's global RNG) to inputs and targets."""
        raise NotImplementedError(f"Task {self.name!r} does not support augmentation")

    @classmethod
    def data_bytes(cls, options: Mapping[str, Any]) -> int:
        """About how many bytes of memory the task's data take with these ``options`` (0: not estimated).

        A problem file whose data would not fit in memory is refused before anything is allocated.
        """
        return 0

    def equivariance_error(self, model: nn.Module, loader: Any) -> float | None:
        """Relative equivariance error of ``model`` on ``loader`` (``None`` if the task has none)."""
        return None

    @torch.no_grad()
    def rotation_error(self, model: nn.Module, loader: Any, turn: Callable[[Any, torch.Tensor], Any],
                       compare: Callable[[Any, Any, torch.Tensor, Any], tuple[torch.Tensor, torch.Tensor]],
                       join: Callable[[Any, Any], tuple[Any, Callable[[Any], tuple[Any, Any]]]] | None = None
                       ) -> float:
        r"""A relative rotation error :math:`\sum_b \text{num}_b / \sum_b \text{den}_b` over ``loader``.

        One Haar rotation R per batch, drawn from a generator seeded 0 (the same rotations on every call).

        Args:
            model: The model, run through :meth:`forward`.
            loader: Batches.
            turn: ``turn(batch, R)`` — the batch with its inputs rotated.
            compare: ``compare(out, turned_out, R, batch) -> (num, den)`` — the batch's sums, e.g.
                ``Σ‖f(Rx) − R f(x)‖`` and ``Σ‖f(x)‖``.
            join: Optional ``join(batch, turned) -> (both, split)``: one batch holding the two, and
                ``split(f(both)) -> (f(batch), f(turned))``. Then x and Rx go through the model in one
                stacked forward instead of two (for models whose samples do not interact).
        """
        from constrained_eq._utils.loaders import to_device

        generator = torch.Generator().manual_seed(0)
        parameter = next(model.parameters())
        num = den = 0.0
        for batch in loader:
            batch = to_device(batch, parameter.device)
            if join is None:
                out = self.forward(model, batch)
                rotation = random_rotation(generator, out.dtype, parameter.device)
                turned_out = self.forward(model, turn(batch, rotation))
            else:
                rotation = random_rotation(generator, parameter.dtype, parameter.device)
                both, split = join(batch, turn(batch, rotation))
                out, turned_out = split(self.forward(model, both))
            batch_num, batch_den = compare(out, turned_out, rotation, batch)
            num, den = num + batch_num, den + batch_den  # device tensors: one read at the end
        return float(num) / max(float(den), 1e-12)


def _name(task: Task) -> str:
    return getattr(task, "name", type(task).__name__)


def invariance_sums(out: torch.Tensor, turned: torch.Tensor, rotation: torch.Tensor,
                    batch: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """``(Σ|f(Rx) − f(x)|, Σ|f(x)|)``: the ``compare`` of :meth:`Task.rotation_error` for invariant outputs."""
    return (turned - out).abs().sum(), out.abs().sum()


def projected(model: nn.Module) -> nn.Module:
    """A copy of ``model`` computing f_{θ,0}: every :class:`HomotopicLayer` replaced by its f_eq."""
    return project(model, inplace=False) if is_relaxed(model) else copy.deepcopy(model)

