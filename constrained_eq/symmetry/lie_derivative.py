r"""Lie derivative of a module (forward-mode JVP) and of a linear map (closed form), CR §3."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch.func import jvp

__all__ = ["lie_derivative", "linear_lie_derivative"]


def _apply(generator: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """dρ(A) x on the last axis of ``x`` (or its last two axes, flattened)."""
    d = generator.shape[-1]
    a = generator.to(x.dtype)
    if x.shape[-1] == d:
        return x @ a.T
    if x.dim() >= 2 and x.shape[-2] * x.shape[-1] == d:
        return (x.flatten(-2) @ a.T).reshape(x.shape)
    raise ValueError(f"Expected the last axis (or last two axes) of the tensor to have size {d} (got {tuple(x.shape)})")


def lie_derivative(
    module: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    generator_in: torch.Tensor,
    generator_out: torch.Tensor | None = None,
) -> torch.Tensor:
    r"""Lie derivative of ``module`` at ``x`` along the generator(s) A (Gruver et al., CR Fig. 3a).

    .. math::
        L_A f(x) = \frac{d}{dt}\Big|_{t=0} \rho_{out}(e^{tA})^{-1} f(\rho_{in}(e^{tA}) x)
                 = J_f(x)[d\rho_{in}(A)\,x] - d\rho_{out}(A)\,f(x),

    computed with one forward-mode JVP (``torch.func.jvp``) per generator. It vanishes for every
    ``x`` iff ``module`` is equivariant to the connected group.

    Args:
        module: The function ``f``.
        x: The point, shape ``(*, d_in)`` (or ``(*, C, 3)`` with ``C·3 = d_in``).
        generator_in: dρ_in(A), shape ``(d_in, d_in)``, or ``(K, d_in, d_in)`` for K generators.
        generator_out: dρ_out(A) of the same leading shape; ``None`` for invariant outputs.

    Returns:
        Tensor: shape of ``f(x)``, with a leading ``K`` axis when ``K`` generators are given.

    Examples:
        >>> from constrained_eq.symmetry import cartesian_generators
        >>> J = cartesian_generators(3)
        >>> lie_derivative(torch.linalg.vector_norm, torch.randn(3), J[0]).abs() < 1e-6
        tensor(True)
    """
    if generator_in.dim() == 3:
        outs = [
            lie_derivative(module, x, generator_in[k], None if generator_out is None else generator_out[k])
            for k in range(generator_in.shape[0])
        ]
        return torch.stack(outs)
    if generator_in.dim() != 2:
        raise ValueError(f"Expected 'generator_in' to have shape (d, d) or (K, d, d) (got {tuple(generator_in.shape)})")
    out, tangent = jvp(module, (x,), (_apply(generator_in, x),))
    if generator_out is None:
        return tangent
    return tangent - _apply(generator_out, out)


def linear_lie_derivative(weight: torch.Tensor, algebra_in: torch.Tensor, algebra_out: torch.Tensor) -> torch.Tensor:
    r"""Closed-form Lie derivative of :math:`x \mapsto Wx`: :math:`L_A(W) = W\,d\rho_{in}(A) - d\rho_{out}(A)\,W`.

    It is zero for all generators iff ``W`` is an intertwiner (CR §3).

    Args:
        weight: W, shape ``(d_out, d_in)``.
        algebra_in: dρ_in(A), shape ``(d_in, d_in)`` or ``(K, d_in, d_in)``.
        algebra_out: dρ_out(A), shape ``(d_out, d_out)`` or ``(K, d_out, d_out)``.

    Returns:
        Tensor: shape ``(d_out, d_in)`` or ``(K, d_out, d_in)``.

    Examples:
        >>> from constrained_eq.symmetry import cartesian_generators
        >>> J = cartesian_generators(3)
        >>> linear_lie_derivative(2 * torch.eye(3), J, J).abs().max()
        tensor(0.)
    """
    return weight @ algebra_in - algebra_out @ weight
