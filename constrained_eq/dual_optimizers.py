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

__all__ = ["DUAL_OPTIMIZERS", "NuPI", "resolve_dual_optimizer"]

DUAL_OPTIMIZERS = ("sgd", "nupi")


def _number(value: Any, name: str, low: float, low_open: bool = False, high: float | None = None) -> float:
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    ok = ok and (value > low if low_open else value >= low) and (high is None or value < high)
    if not ok:
        bound = f"{'>' if low_open else '≥'} {low}" + (f" and < {high}" if high is not None else "")
        raise ValueError(f"NuPI: expected '{name}' to be a finite number {bound} (got {value!r})")
    return float(value)


class NuPI:
    r"""nuPI multipliers (Cooper's ``nuPI``) with gains κ_p, κ_i and EMA coefficient ν; step size η_d.

    A factory: ``NuPI(kappa_p=…)(params, lr)`` builds the maximising ``cooper.optim.nuPI``. Pass it (or
    the name ``"nupi"`` for the defaults) as ``Solver(..., dual_optimizer=...)``; the Solver supplies
    ``lr = dual_lr``.

    Args:
        kappa_p (float, optional): Proportional gain κ_p ≥ 0, the damping (default: :obj:`10.0`,
            measured in docs/results/nbody.md).
        kappa_i (float, optional): Integral gain κ_i > 0; κ_p = 0, κ_i = 1 is plain ascent (default: :obj:`1.0`).
        ema_nu (float, optional): EMA coefficient ν ∈ [0, 1) of the error (default: :obj:`0.0`).
    """

    name = "nupi"

    def __init__(self, kappa_p: float = 10.0, kappa_i: float = 1.0, ema_nu: float = 0.0) -> None:
        self.kappa_p = _number(kappa_p, "kappa_p", 0.0)
        self.kappa_i = _number(kappa_i, "kappa_i", 0.0, low_open=True)
        self.ema_nu = _number(ema_nu, "ema_nu", 0.0, high=1.0)

    def __call__(self, params: Any, lr: float) -> torch.optim.Optimizer:
        return cooper.optim.nuPI(params, lr=lr, Kp=self.kappa_p, Ki=self.kappa_i, ema_nu=self.ema_nu, maximize=True)

    def __repr__(self) -> str:
        return f"NuPI(kappa_p={self.kappa_p}, kappa_i={self.kappa_i}, ema_nu={self.ema_nu})"


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
