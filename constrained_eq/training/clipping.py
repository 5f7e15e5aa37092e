r"""Gradient clipping of θ: :math:`g \leftarrow g \min(1, c / \|g\|_2)` before each primal step."""

from __future__ import annotations

from typing import Any

import torch

from constrained_eq.training.callbacks import Callback

__all__ = ["GradClipper"]


class GradClipper(Callback):
    """Clip the joint gradient norm of the parameters of ``optimizers`` to ``max_norm`` before their steps.

    A step pre-hook of the first optimizer: the primal optimizers step one after the other after one
    backward pass, so the first step sees every gradient and the norm is that of all of θ together.
    """

    def __init__(self, optimizers: torch.optim.Optimizer | list[torch.optim.Optimizer], max_norm: float) -> None:
        self.optimizers = optimizers if isinstance(optimizers, list) else [optimizers]
        self.max_norm = float(max_norm)
        self.last_norm: torch.Tensor | None = None
        self.optimizers[0].register_step_pre_hook(self)

    def __call__(self, optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        params = [p for opt in self.optimizers for group in opt.param_groups for p in group["params"]
                  if p.grad is not None]
        if params:
            self.last_norm = torch.nn.utils.clip_grad_norm_(params, self.max_norm, foreach=True).detach()

    def on_epoch_end(self, epoch: int, row: dict[str, Any]) -> None:
        """Record ``grad_norm.primal``, the norm before clipping at the epoch's last step."""
        if self.last_norm is not None:
            row["grad_norm.primal"] = float(self.last_norm)
