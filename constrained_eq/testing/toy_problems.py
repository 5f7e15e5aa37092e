"""Toy problems with closed-form solutions, shipped so users and our tests can check a solver.

* :class:`VectorModel` — the primal variable is one parameter vector x.
* :func:`projection_problem` — min ½‖x − a‖² s.t. x_S = 0, x_T ≤ b, with
  x* = a off S and T, x*_S = 0, x*_T = min(a_T, b); λ*_S = a_S, μ*_T = [a_T − b]₊.
* :func:`resilient_scalar_problem` — min ½(x − a)² + ρ/2 u² s.t. |x| ≤ u, with
  x* = u* = a/(1+ρ), λ* = ρa/(1+ρ) for a > 0 (so u* = λ*/ρ).
* :func:`linear_constraints` and :func:`norm_kkt_point` — Cooper's convex test family,
  min ‖x‖² s.t. Ax ≤ b, Cx = d, and its KKT point by an exact active-set solve.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np
import torch

from constrained_eq.core.problem.constraints import Equality, Inequality, Resilient
from constrained_eq.core.problem.problem import ConstrainedProblem
from constrained_eq.core.problem.target import Target

__all__ = ["VectorModel", "projection_problem", "projection_solution", "resilient_scalar_problem",
           "linear_constraints", "norm_kkt_point"]


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


def linear_constraints(num_variables: int, num_constraints: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Cooper's generator of well-conditioned linear constraints: M = U S V[:m] and r = z / ‖z‖.

    U, V are orthogonal (QR of Gaussian matrices), S = diag(1.5 + uniform[0, 1)); the rows of M are
    independent, so min ‖x‖² s.t. Mx ≤ r (or = r) has a unique KKT point. Float32, as Cooper's tests.
    """
    generator = torch.Generator().manual_seed(seed)
    s = torch.diag(torch.rand(num_constraints, generator=generator) + 1.5)
    u, _ = torch.linalg.qr(torch.randn(num_constraints, num_constraints, generator=generator))
    v, _ = torch.linalg.qr(torch.randn(num_variables, num_variables, generator=generator))
    lhs = torch.mm(u, torch.mm(s, v[:num_constraints, :]))
    rhs = torch.randn(num_constraints, generator=generator)
    return lhs, rhs / rhs.norm()


def norm_kkt_point(a: np.ndarray | None, b: np.ndarray | None, c: np.ndarray | None = None,
                   d: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """KKT point of min ‖x‖² s.t. Ax ≤ b, Cx = d (float64), by enumerating active sets.

    For an active set S the equality-constrained problem with M = [A_S; C], r = [b_S; d] has
    x = Mᵀ(MMᵀ)⁻¹ r and multipliers ν = −2 (MMᵀ)⁻¹ r (stationarity 2x + Mᵀν = 0). The answer is the
    S with Ax ≤ b and ν_S ≥ 0. Returns x*, μ* (of Ax ≤ b, zero off S) and λ* (of Cx = d).
    """
    n = (a if a is not None else c).shape[1]
    a = np.zeros((0, n)) if a is None else np.asarray(a, dtype=np.float64)
    b = np.zeros(0) if b is None else np.asarray(b, dtype=np.float64)
    c = np.zeros((0, n)) if c is None else np.asarray(c, dtype=np.float64)
    d = np.zeros(0) if d is None else np.asarray(d, dtype=np.float64)
    for size in range(len(b) + 1):
        for active in itertools.combinations(range(len(b)), size):
            m = np.vstack([a[list(active)], c])
            r = np.concatenate([b[list(active)], d])
            nu = -2.0 * np.linalg.solve(m @ m.T, r) if len(r) else np.zeros(0)
            x = -0.5 * m.T @ nu if len(r) else np.zeros(n)
            mu = np.zeros(len(b))
            mu[list(active)] = nu[:size]
            if (a @ x <= b + 1e-10).all() and (mu >= -1e-12).all():
                return x, mu, nu[size:]
    raise ValueError("norm_kkt_point: no active set satisfies the KKT conditions (is the problem feasible?)")
