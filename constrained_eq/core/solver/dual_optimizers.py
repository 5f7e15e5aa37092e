r"""Dual optimizers chosen by name: ``"sgd"`` (plain ascent) and ``"nupi"`` (Cooper's nuPI controller).

Plain ascent :math:`\lambda_{t+1} = \lambda_t + \eta_d h_t` on an equality :math:`h(\gamma) = \gamma = 0`
with plain descent on γ is an undamped oscillator when :math:`\partial J_0/\partial\gamma` is flat:
:math:`\gamma_{t+1} - 2\gamma_t + \gamma_{t-1} \approx -\eta_p\eta_d\,\gamma_t`. nuPI (Sohrabi et al.,
2024) adds a proportional term,

.. math::
    \xi_t = \nu\,\xi_{t-1} + (1-\nu)\,h_t, \qquad
    \lambda_{t+1} = \lambda_t + \eta_d\,\bigl(\kappa_i\,h_t + \kappa_p\,(\xi_t - \xi_{t-1})\bigr),

so (with ν = 0) γ obeys :math:`\ddot\gamma + \eta_p\eta_d\kappa_p\,\dot\gamma + \eta_p\eta_d\kappa_i\,\gamma = 0`:
damping ratio :math:`\zeta = \tfrac{\kappa_p}{2}\sqrt{\eta_p\eta_d/\kappa_i}`, critical at
:math:`\kappa_p = 2\sqrt{\kappa_i/(\eta_p\eta_d)}`. The update is Cooper's ``cooper.optim.nuPI``
unchanged (its default ``init_type``: the first step is plain ascent).
"""

from __future__ import annotations

import math
from typing import Any

import cooper
import torch

from constrained_eq._utils.checks import check_number

__all__ = ["DUAL_OPTIMIZERS", "NuPI", "resolve_dual_optimizer"]

DUAL_OPTIMIZERS = ("sgd", "nupi")


class NuPI:
    r"""nuPI multipliers (Cooper's ``nuPI``) with gains κ_p, κ_i and EMA coefficient ν; step size η_d.

    A factory: ``NuPI(kappa_p=…)(params, lr, eta_p)`` builds the maximising ``cooper.optim.nuPI``. Pass it
    (or the name ``"nupi"`` for the defaults) as ``Solver(..., dual_optimizer=...)``; the Solver supplies
    ``lr = dual_lr``, ``eta_p`` (the plain-SGD step size of γ, when there is one) and ``primal_lr`` (the primal
    optimizer's first learning rate η_θ).

    Args:
        kappa_p (float, optional): Proportional gain κ_p ≥ 0, the damping. ``None`` (default) takes the
            critical damping of the linearised γ–λ system, :math:`\kappa_p = 2\sqrt{\kappa_i/(\eta_p\eta_d)}`
            (measured best in docs/results/nbody.md) when γ is stepped by plain SGD at η_p. On a problem
            without such variables (a weight norm, a rate) η_θ stands in for η_p:
            :math:`\kappa_p = 2\sqrt{\kappa_i/(\eta_\theta\eta_d)}`, the critical damping of a constraint
            :math:`g` with :math:`\|\nabla_\theta g\| = 1` under SGD at η_θ, whose linearisation is
            :math:`\ddot g + \eta_\theta\eta_d\kappa_p\,\dot g + \eta_\theta\eta_d\kappa_i\,g = 0`; set
            ``kappa_p`` when the gradients are far from unit norm or the primal optimizer is adaptive.
        kappa_i (float, optional): Integral gain κ_i > 0; κ_p = 0, κ_i = 1 is plain ascent (default: :obj:`1.0`).
        ema_nu (float, optional): EMA coefficient ν ∈ [0, 1) of the error (default: :obj:`0.0`).
    """

    name = "nupi"

    def __init__(self, kappa_p: float | None = None, kappa_i: float = 1.0, ema_nu: float = 0.0) -> None:
        self.kappa_p = None if kappa_p is None else check_number(kappa_p, "kappa_p", "NuPI", at_least=0.0)
        self.kappa_i = check_number(kappa_i, "kappa_i", "NuPI", above=0.0)
        self.ema_nu = check_number(ema_nu, "ema_nu", "NuPI", at_least=0.0, below=1.0)

    def gain(self, lr: float, eta_p: float | None, primal_lr: float | None = None) -> float:
        r"""κ_p: the critical value :math:`2\sqrt{\kappa_i/(\eta_p\eta_d)}` when it was left ``None``.

        η_p is γ's plain-SGD step size, else the primal learning rate η_θ (see the class docstring).
        """
        if self.kappa_p is not None:
            return self.kappa_p
        eta = eta_p if eta_p is not None else primal_lr
        if eta is None or not eta > 0:
            raise ValueError("NuPI: kappa_p=None (critical damping) needs a step size of the primal variables: plain "
                             "SGD on γ or a primal optimizer with a learning rate > 0; pass kappa_p=<number> instead")
        return 2.0 * math.sqrt(self.kappa_i / (eta * lr))

    def __call__(self, params: Any, lr: float, eta_p: float | None = None, *,
                 primal_lr: float | None = None) -> torch.optim.Optimizer:
        return cooper.optim.nuPI(params, lr=lr, Kp=self.gain(lr, eta_p, primal_lr), Ki=self.kappa_i,
                                 ema_nu=self.ema_nu, maximize=True)

    def __repr__(self) -> str:
        kappa_p = "critical" if self.kappa_p is None else self.kappa_p
        return f"NuPI(kappa_p={kappa_p}, kappa_i={self.kappa_i}, ema_nu={self.ema_nu})"


def resolve_dual_optimizer(spec: Any) -> NuPI | None:
    """``"nupi"`` or a :class:`NuPI` → the factory; ``"sgd"`` → ``None`` (the Solver's plain ascent)."""
    if isinstance(spec, NuPI):
        return spec
    if spec == "nupi":
        return NuPI()
    if spec == "sgd":
        return None
    raise ValueError(f"Solver: expected 'dual_optimizer' to be one of {', '.join(map(repr, DUAL_OPTIMIZERS))}, "
                     f"a NuPI(...) or a factory params -> Optimizer (got {spec!r})")
