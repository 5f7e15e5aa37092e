"""Toy problems with closed-form solutions, shipped so users and our tests can check a solver.

* :class:`VectorModel` — the primal variable is one parameter vector x.
* :func:`projection_problem` — min ½‖x − a‖² s.t. x_S = 0, x_T ≤ b, with
  x* = a off S and T, x*_S = 0, x*_T = min(a_T, b); λ*_S = a_S, μ*_T = [a_T − b]₊.
* :func:`resilient_scalar_problem` — min ½(x − a)² + ρ/2 u² s.t. |x| ≤ u, with
  x* = u* = a/(1+ρ), λ* = ρa/(1+ρ) for a > 0 (so u* = λ*/ρ).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from constrained_eq.constraints import Equality, Inequality, Resilient, Target
from constrained_eq.problem import ConstrainedProblem

__all__ = ["VectorModel", "projection_problem", "projection_solution", "resilient_scalar_problem"]


class VectorModel(torch.nn.Module):
    """A model whose only parameter is a vector x; ``forward`` returns x whatever the batch."""

    def __init__(self, size: int, init: torch.Tensor | None = None) -> None:
        super().__init__()
        self.x = torch.nn.Parameter(torch.zeros(size) if init is None else init.clone())

    def forward(self, batch: object = None) -> torch.Tensor:
        return self.x


def _entries(indices: Sequence[int], name: str) -> Target:
    index = torch.as_tensor(list(indices), dtype=torch.long)
    return Target(lambda model, batch, output: model.x[index.to(model.x.device)], name, needs_batch=False)


def projection_problem(a: torch.Tensor, eq_idx: Sequence[int], ineq_idx: Sequence[int], b: torch.Tensor,
                       scale: float = 1.0) -> ConstrainedProblem:
    """Min scale·½‖x − a‖² s.t. x_S = 0 (S = ``eq_idx``), x_T ≤ b (T = ``ineq_idx``)."""
    constraints = []
    if len(eq_idx):
        constraints.append(Equality(_entries(eq_idx, "x_s")))
    if len(ineq_idx):
        shifted = _entries(ineq_idx, "x_t")
        constraints.append(Inequality(Target(lambda m, bt, o: shifted(m) - b.to(m.x), "x_t_minus_b",
                                             needs_batch=False), bound=0.0))
    return ConstrainedProblem(lambda out, batch: scale * 0.5 * (out - a.to(out)).pow(2).sum(), constraints)


def projection_solution(a: torch.Tensor, eq_idx: Sequence[int], ineq_idx: Sequence[int], b: torch.Tensor,
                        scale: float = 1.0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """KKT point (x*, λ* of the equalities, μ* of the inequalities) of :func:`projection_problem`."""
    x = a.clone()
    eq = torch.as_tensor(list(eq_idx), dtype=torch.long)
    ineq = torch.as_tensor(list(ineq_idx), dtype=torch.long)
    x[eq] = 0.0
    x[ineq] = torch.minimum(a[ineq], b)
    return x, scale * a[eq], scale * torch.clamp(a[ineq] - b, min=0.0)


def resilient_scalar_problem(a: float, rho: float) -> ConstrainedProblem:
    """Min ½(x − a)² + ρ/2 u² s.t. |x| ≤ u (the slack cost comes from the constraint)."""
    target = Target(lambda model, batch, output: model.x, "x", needs_batch=False)
    return ConstrainedProblem(lambda out, batch: 0.5 * (out - a).pow(2).sum(), [Resilient(target, rho=rho)])
