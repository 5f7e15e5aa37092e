r"""The projection error of a relaxed model: how far f_{θ,γ} is from its projection f_{θ,0} (SPEC §5.1).

The per-layer branch contributions are :func:`constrained_eq.homotopy.recording.branch_contributions`.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from constrained_eq.homotopy.recording import sample_norms
from constrained_eq.homotopy.relax import project

__all__ = ["projection_error"]


def projection_error(model: nn.Module, *inputs: Any, **kwargs: Any) -> torch.Tensor:
    r"""Projection error :math:`\mathbb{E}_{batch}\,\|f_{\theta,\gamma}(x) - f_{\theta,0}(x)\|` (bounded by Thm 4.1).

    :math:`f_{\theta,0}` is :func:`~constrained_eq.project` (a view sharing the parameters).

    Examples:
        >>> from constrained_eq.homotopy import relax
        >>> net = relax(nn.Sequential(nn.Linear(3, 3)), layers=[nn.Linear], gamma_init=0.0)
        >>> projection_error(net, torch.ones(2, 3))
        tensor(0., grad_fn=<MeanBackward0>)
    """
    relaxed = model(*inputs, **kwargs)
    strict = project(model)(*inputs, **kwargs)
    if isinstance(relaxed, torch.Tensor):
        return sample_norms(relaxed - strict).mean()
    return sample_norms([a - b for a, b in zip(relaxed, strict, strict=True)]).mean()
