"""Homotopic layers: f_eq(x) + γ·f_neq(x) with a learnable scalar γ per layer (ACE eq. 3, CR eq. 2).

This module is the *mechanism* (as ``torch.nn.utils.parametrize`` is for parametrizations);
the architectures that use it live in :mod:`constrained_eq.nn`.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

from constrained_eq.constraints import Target, register_target

__all__ = ["HomotopicLayer", "homotopic_layers", "gammas"]


def _combine(eq_out: Any, neq_out: Any, gamma: torch.Tensor) -> Any:
    """Return eq_out + γ·neq_out, element-wise over (nested) tuples and lists of tensors."""
    if isinstance(eq_out, torch.Tensor):
        return eq_out + gamma * neq_out
    if isinstance(eq_out, tuple | list):
        if not isinstance(neq_out, tuple | list) or len(neq_out) != len(eq_out):
            raise ValueError("f_neq must return the same structure as f_eq")
        return type(eq_out)(_combine(a, b, gamma) for a, b in zip(eq_out, neq_out, strict=True))
    raise TypeError(f"Expected f_eq to return a Tensor or a tuple of Tensors (got {type(eq_out).__name__})")


class HomotopicLayer(nn.Module):
    r"""A layer :math:`f(x) = f_{eq}(x) + \gamma f_{neq}(x)` on the same input (ACE eq. 3).

    ``γ = 0`` gives back the equivariant layer exactly.

    Args:
        eq (nn.Module): The equivariant branch f_eq.
        neq (nn.Module): The unconstrained branch f_neq; it takes the same arguments as ``eq`` and
            returns the same structure (a tensor or a tuple of tensors).
        gamma_init (float, optional): Initial γ (default: :obj:`1.0`, as ACE).

    Shapes:
        - **gamma:** ``()``
    """

    def __init__(self, eq: nn.Module, neq: nn.Module, gamma_init: float = 1.0) -> None:
        super().__init__()
        self.eq = eq
        self.neq = neq
        self.gamma = nn.Parameter(torch.tensor(float(gamma_init)))

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        return _combine(self.eq(*args, **kwargs), self.neq(*args, **kwargs), self.gamma)

    def extra_repr(self) -> str:
        return f"gamma={self.gamma.detach().item():.4g}"


def homotopic_layers(model: nn.Module) -> Iterator[HomotopicLayer]:
    """Yield the homotopic layers of ``model`` in registration (depth-first) order."""
    for module in model.modules():
        if isinstance(module, HomotopicLayer):
            yield module


def _gamma_vector(model: nn.Module, batch: Any = None, output: Any = None) -> torch.Tensor:
    layers = list(homotopic_layers(model))
    if not layers:
        raise ValueError(
            f"Expected the model to contain HomotopicLayer modules (got none in {type(model).__name__}); "
            "wrap its equivariant layers with constrained_eq.relax(model) first"
        )
    return torch.stack([layer.gamma for layer in layers])


def _gamma_parameters(model: nn.Module) -> list[nn.Parameter]:
    return [layer.gamma for layer in homotopic_layers(model)]


gammas = register_target(Target(_gamma_vector, "gammas", needs_batch=False, variables=_gamma_parameters))
gammas.__doc__ = "The vector γ = (γ_1, …, γ_L) of a relaxed model: ``gammas(model) -> Tensor (L,)``."
