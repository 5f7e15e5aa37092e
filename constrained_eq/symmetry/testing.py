"""``assert_equivariant``: the test helper users run on their own models (after e3nn/util/test.py)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from constrained_eq.symmetry.groups import Group
from constrained_eq.symmetry.metrics import equivariance_error

__all__ = ["assert_equivariant"]

_DEFAULT_TOL = {torch.float64: 1e-10, torch.float32: 1e-4}


def assert_equivariant(
    model: Callable[[torch.Tensor], torch.Tensor],
    group: Group,
    x: torch.Tensor,
    *,
    act_in: Any,
    act_out: Any = None,
    n: int = 8,
    atol: float | None = None,
    generator: torch.Generator | None = None,
) -> float:
    r"""Assert :math:`\max_{g, x} \|\rho_Y(g) f(x) - f(\rho_X(g) x)\| \le` ``atol`` over ``n`` random ``g``.

    Args:
        model: ``model(x)`` with a leading batch axis.
        group: The group, e.g. ``SO(3)``.
        x: Inputs, shape ``(B, *)``.
        act_in: ρ_X: a :class:`~constrained_eq.symmetry.Rep` or a callable ``act(g, x) -> (n, B, *)``.
        act_out: ρ_Y in the same forms or ``"trivial"`` (default: ``act_in``).
        n: Number of group samples (default: :obj:`8`).
        atol: Tolerance; by default 1e-10 (float64) or 1e-4 (float32) times ``max(1, max ‖f(x)‖)``.
        generator: Optional RNG for the group samples.

    Returns:
        float: The largest error seen.

    Raises:
        AssertionError: If the largest error exceeds ``atol``.

    Examples:
        >>> from constrained_eq.symmetry import SO, VectorRep
        >>> assert_equivariant(lambda v: 3 * v, SO(3), torch.randn(2, 3).double(), act_in=VectorRep(1)) < 1e-10
        True
    """
    with torch.no_grad():
        errors = equivariance_error(model, x, group, n, act_in=act_in, act_out=act_out, generator=generator,
                                    reduction="none")
        if atol is None:
            scale = max(1.0, float(model(x).reshape(x.shape[0], -1).norm(dim=1).max()))
            atol = _DEFAULT_TOL.get(x.dtype, 1e-2) * scale
    worst = float(errors.max())
    if not worst <= atol:
        raise AssertionError(
            f"{type(model).__name__} is not {group!r}-equivariant: max error {worst:.3g} > atol {atol:.3g} "
            f"over {n} group samples and {x.shape[0]} inputs"
        )
    return worst
