r"""Monte-Carlo equivariance error (SPEC §5.1).

The projection error and the branch contributions of a relaxed model are in
:mod:`constrained_eq.homotopy.metrics` and :mod:`constrained_eq.homotopy.recording`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from constrained_eq._utils.checks import check_int
from constrained_eq.symmetry.groups import Group
from constrained_eq.symmetry.reps import Rep, act

__all__ = ["equivariance_error", "resolve_action"]

Action = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def resolve_action(action: Any, field_name: str) -> Action:
    """Turn a :class:`Rep`, ``"trivial"`` or a callable ``act(g, x) -> (n, B, *)`` into a callable."""
    if isinstance(action, Rep):
        return lambda g, x: act(action, g, x)
    if action == "trivial":
        return lambda g, x: x.unsqueeze(0).expand(g.shape[0], *x.shape)
    if callable(action):
        return action
    raise TypeError(
        f"Expected '{field_name}' to be a Rep (e.g. IrrepsRep('1o'), VectorRep(4)), 'trivial' or a callable "
        f"act(g, x) -> Tensor (n, B, *) (got {type(action).__name__})"
    )


def _errors(
    model: Callable, x: torch.Tensor, group: Group, n: int, act_in: Any, act_out: Any, generator
) -> torch.Tensor:
    if not isinstance(group, Group):
        raise TypeError(f"Expected 'group' to be a Group such as SO(3) or S(5) (got {type(group).__name__})")
    check_int(n, "n")
    rho_in = resolve_action(act_in, "act_in")
    rho_out = resolve_action(act_in if act_out is None else act_out, "act_out")
    g = group.sample(n, generator=generator, dtype=x.dtype, device=x.device)
    fx = model(x)
    xg = rho_in(g, x)
    f_xg = model(xg.reshape(n * x.shape[0], *xg.shape[2:]))
    g_fx = rho_out(g, fx)
    diff = g_fx - f_xg.reshape(g_fx.shape)
    return diff.reshape(n, x.shape[0], -1).norm(dim=-1)


def equivariance_error(
    model: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    group: Group,
    n: int = 5,
    *,
    act_in: Any = None,
    act_out: Any = None,
    generator: torch.Generator | None = None,
    reduction: str = "mean",
) -> torch.Tensor:
    r"""ACE's equivariance deviation :math:`\mathbb{E}_{g}\,\|\rho_Y(g) f(x) - f(\rho_X(g) x)\|`.

    ``n`` Haar-random elements are drawn; the ``n·B`` transformed inputs are stacked and sent through
    the model in **one** forward. The norm is per sample (over all non-batch axes), un-squared, then
    averaged over samples and group elements (ACE uses ``n = 5``).

    Args:
        model: ``model(x)`` with a leading batch axis in and out.
        x: Inputs, shape ``(B, *)``.
        group: The group, e.g. ``SO(3)``.
        n: Number of group samples (default: :obj:`5`).
        act_in: ρ_X, a :class:`Rep` acting on the last axis (or last two, flattened) or a callable
            ``act(g, x) -> (n, B, *)``.
        act_out: ρ_Y in the same forms, or ``"trivial"`` for invariant outputs (default: ``act_in``).
        generator: Optional RNG for the group samples.
        reduction: ``"mean"`` (a scalar) or ``"none"`` (shape ``(n, B)``).

    Examples:
        >>> from constrained_eq.symmetry import SO, VectorRep
        >>> x = torch.randn(4, 3)
        >>> err = equivariance_error(lambda v: 2 * v, x, SO(3), act_in=VectorRep(1))
        >>> bool(err < 1e-5)
        True
    """
    if reduction not in ("mean", "none"):
        raise ValueError(f"Expected 'reduction' to be 'mean' or 'none' (got {reduction!r})")
    if act_in is None:
        raise ValueError("Expected 'act_in' to be a Rep or a callable (got None); e.g. act_in=VectorRep(1)")
    errors = _errors(model, x, group, n, act_in, act_out, generator)
    return errors.mean() if reduction == "mean" else errors
