r"""Registered targets for constraints that are not about equivariance.

- ``spectral_norms``: :math:`\hat\sigma(W_l) = u_l^\top W_l v_l` by power iteration, one per layer;
  ``Inequality(spectral_norms, bound=1.0)`` is a per-layer Lipschitz bound.
- ``l1_norms``: :math:`\|W_l\|_1 / \#W_l` (mean absolute weight), one per layer;
  ``Inequality(l1_norms, bound=0.05)`` is a sparsity budget.
- ``false_positive_rate``: :math:`\sum_i \sigma(s_i/\tau)[y_i=0] / \sum_i [y_i=0]`, shape ``(1,)``, on the batch;
  ``Inequality(false_positive_rate, bound=0.05)`` bounds a binary classifier's false positives.
- ``positive_rate_gap``: :math:`(r_0 - r_1,\ r_1 - r_0)` with :math:`r_g = \sum_i \sigma(s_i)[a_i=g] /
  \sum_i [a_i=g]` for the group ``a = batch[2]``; ``Inequality(positive_rate_gap, bound=0.05)`` is
  :math:`|r_0 - r_1| \le 0.05` (demographic parity within a margin).

Rates are ratios of sums, so over a whole split they are reduced as ratios of the split's sums
(``totals``/``from_totals`` of :class:`~constrained_eq.core.problem.target.Target`), not as means of batch rates.

The weight layers are the ``nn.Linear`` modules and the modules with a 2-D ``weight`` parameter
(e.g. :class:`~constrained_eq.models.VNLinear`), in ``model.modules()`` order.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from constrained_eq.core.problem.target import Target, register_target

__all__ = [
    "weight_layers",
    "spectral_norm_estimate",
    "exact_spectral_norms",
    "spectral_norms",
    "l1_norms",
    "false_positive_rate",
    "fpr_surrogate",
    "positive_rate_gap",
]

_U, _V = "_spectral_u", "_spectral_v"


def weight_layers(model: nn.Module) -> list[nn.Module]:
    """The modules of ``model`` whose ``weight`` is a 2-D parameter (``nn.Linear``, ``VNLinear``, …)."""
    layers = [
        m for m in model.modules() if isinstance(getattr(m, "weight", None), nn.Parameter) and m.weight.dim() == 2
    ]
    if not layers:
        raise ValueError(
            f"Expected the model to contain layers with a 2-D 'weight' parameter (got none in {type(model).__name__})"
        )
    return layers


def spectral_norm_estimate(module: nn.Module, n_power_iterations: int = 1, eps: float = 1e-12) -> torch.Tensor:
    r"""Differentiable estimate :math:`\hat\sigma = u^\top W v` of :math:`\|W\|_2` (Miyato et al. 2018).

    ``u`` and ``v`` persist on the module as non-persistent buffers (they do not enter the
    ``state_dict``), so every call — every training step — continues the power iteration of the last
    instead of starting again: ``n_power_iterations`` steps per call, without gradient
    (:math:`v \leftarrow W^\top u/\|W^\top u\|`, :math:`u \leftarrow W v/\|W v\|`); the gradient of
    :math:`\hat\sigma` is :math:`u v^\top`, as for the true norm.

    **Lag.** :math:`\hat\sigma = \|W v\| \le \sigma_1` always: the estimate never overstates the norm. After
    the weights change (however much) to a W with singular values :math:`\sigma_1 > \sigma_2 \ge \dots` and
    held there, the k-th call's estimate obeys

    .. math::
        1 - \hat\sigma_k/\sigma_1 \;\le\; \tfrac12\,(\sigma_2/\sigma_1)^{4k - 2}\,\tan^2\varphi_0 \qquad (k \ge 1,\
        \text{one iteration per call}),

    with :math:`\varphi_0` the angle between the kept ``u`` and W's top left singular vector: the lag shrinks
    geometrically, by :math:`(\sigma_2/\sigma_1)^4` per step. With no spectral gap (:math:`\sigma_2 \approx
    \sigma_1`) it can trail for long; the certificate of the deployed model
    (:mod:`constrained_eq.training.certificate`) measures :math:`\sigma_1` exactly instead.

    Shapes:
        - **output:** ``()``
    """
    weight = module.weight
    u, v = getattr(module, _U, None), getattr(module, _V, None)
    if u is None or u.shape != weight.shape[:1] or u.dtype != weight.dtype or u.device != weight.device:
        gen = torch.Generator(device="cpu").manual_seed(0)
        u = torch.randn(weight.shape[0], generator=gen, dtype=torch.float64).to(weight)
        v = torch.randn(weight.shape[1], generator=gen, dtype=torch.float64).to(weight)
        module.register_buffer(_U, nn.functional.normalize(u, dim=0, eps=eps), persistent=False)
        module.register_buffer(_V, nn.functional.normalize(v, dim=0, eps=eps), persistent=False)
        n_power_iterations = max(n_power_iterations, 10)
    with torch.no_grad():
        w = weight.detach()
        u, v = getattr(module, _U), getattr(module, _V)
        for _ in range(n_power_iterations):
            v = nn.functional.normalize(w.T @ u, dim=0, eps=eps)
            u = nn.functional.normalize(w @ v, dim=0, eps=eps)
        getattr(module, _U).copy_(u)
        getattr(module, _V).copy_(v)
    return u @ weight @ v


def _spectral_norms(model: nn.Module, batch: Any = None, output: Any = None) -> torch.Tensor:
    return torch.stack([spectral_norm_estimate(m) for m in weight_layers(model)])


def exact_spectral_norms(model: nn.Module) -> torch.Tensor:
    r"""The exact :math:`\|W_l\|_2` of every weight layer (largest singular value, ``torch.linalg.matrix_norm``)."""
    return torch.stack([torch.linalg.matrix_norm(m.weight.detach(), ord=2) for m in weight_layers(model)])


def _l1_norms(model: nn.Module, batch: Any = None, output: Any = None) -> torch.Tensor:
    return torch.stack([m.weight.abs().mean() for m in weight_layers(model)])


def fpr_surrogate(scores: torch.Tensor, labels: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    r"""Smooth false-positive rate :math:`\sum_i \sigma(s_i/\tau)\,[y_i = 0] / \max(1, \sum_i [y_i = 0])`.

    Since :math:`\sigma(s) \ge \tfrac12 [s \ge 0]`, the hard rate (threshold 0) is at most twice it.

    Shapes:
        - **input:** ``scores (B,)`` or ``(B, 1)`` logits, ``labels (B,)`` or ``(B, 1)`` in {0, 1}
        - **output:** ``(1,)``
    """
    scores, labels = scores.reshape(-1), labels.reshape(-1)
    if scores.shape != labels.shape:
        raise ValueError(f"Expected 'labels' to have one entry per score ({scores.numel()}) (got {labels.numel()})")
    negative = (labels == 0).to(scores.dtype)
    return ((torch.sigmoid(scores / temperature) * negative).sum() / negative.sum().clamp(min=1)).reshape(1)


def _fpr_totals(model: nn.Module, batch: Any, output: Any) -> torch.Tensor:
    scores, labels = output.reshape(-1), batch[1].reshape(-1)
    negative = (labels == 0).to(scores.dtype)
    return torch.stack([(torch.sigmoid(scores) * negative).sum(), negative.sum()])


def _rate_totals(model: nn.Module, batch: Any, output: Any) -> torch.Tensor:
    r"""Per group g: :math:`\sum_i \sigma(s_i)[a_i = g]` and :math:`\sum_i [a_i = g]`, shape ``(4,)``."""
    if not isinstance(batch, tuple | list) or len(batch) < 3:
        raise ValueError(f"Expected 'batch' to be an (inputs, labels, groups) triple for positive_rate_gap "
                         f"(got {type(batch).__name__})")
    scores, group = torch.sigmoid(output.reshape(-1)), batch[2].reshape(-1).to(output.dtype)
    return torch.stack([(scores * (1 - group)).sum(), (1 - group).sum(), (scores * group).sum(), group.sum()])


def _rate_gap_from_totals(sums: torch.Tensor) -> torch.Tensor:
    gap = sums[0] / sums[1].clamp(min=1) - sums[2] / sums[3].clamp(min=1)
    return torch.stack([gap, -gap])


def _positive_rate_gap(model: nn.Module, batch: Any, output: Any) -> torch.Tensor:
    return _rate_gap_from_totals(_rate_totals(model, batch, output))


def _false_positive_rate(model: nn.Module, batch: Any = None, output: Any = None) -> torch.Tensor:
    if not isinstance(batch, tuple | list) or len(batch) < 2:
        raise ValueError(
            f"Expected 'batch' to be an (inputs, labels) pair for false_positive_rate (got {type(batch).__name__})"
        )
    return fpr_surrogate(output, batch[1])


spectral_norms = register_target(Target(_spectral_norms, "spectral_norms", needs_batch=False,
                                        exact=exact_spectral_norms))
spectral_norms.__doc__ = (
    "Per-layer spectral norm estimates ``(L,)``; ``Inequality(spectral_norms, bound=1.0)`` makes each "
    "layer 1-Lipschitz, so the network is 1-Lipschitz for 1-Lipschitz activations."
)
l1_norms = register_target(Target(_l1_norms, "l1_norms", needs_batch=False))
l1_norms.__doc__ = "Per-layer mean absolute weight ``(L,)`` (L1 norm normalised by size): a sparsity budget."
false_positive_rate = register_target(Target(_false_positive_rate, "false_positive_rate", needs_batch=True,
                                             totals=_fpr_totals, from_totals=lambda s: (s[0] / s[1].clamp(min=1))
                                             .reshape(1)))
false_positive_rate.__doc__ = (
    "Sigmoid surrogate of the false-positive rate of a binary classifier on the batch, ``(1,)``; reads "
    "the output logits and ``batch[1]`` labels."
)
positive_rate_gap = register_target(Target(_positive_rate_gap, "positive_rate_gap", totals=_rate_totals,
                                           from_totals=_rate_gap_from_totals))
positive_rate_gap.__doc__ = (
    "Sigmoid-surrogate positive rates of two groups, ``(r_0 − r_1, r_1 − r_0)``, ``(2,)``; reads the output logits and "
    "the group ``batch[2]`` in {0, 1}. ``Inequality(positive_rate_gap, bound=0.05)`` is |r_0 − r_1| ≤ 0.05."
)
