"""A constrained learning problem as data: an objective and a list of constraints.

.. math::
    \\min_{\\theta} \\; J_0(\\theta) = \\mathbb{E}\\,\\ell_0(f_\\theta(x), y)
    \\quad \\text{s.t.} \\quad h_j(\\theta) = 0,\\; g_k(\\theta) \\le b_k,\\; |r_m(\\theta)| \\le u_m

No optimizer state lives here: a :class:`ConstrainedProblem` can be solved by any formulation
(see :mod:`constrained_eq.core.formulations`) without being rebuilt.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch

from constrained_eq.core.problem.constraints import Constraint

__all__ = ["Objective", "ConstrainedProblem", "default_forward"]


def default_forward(model: torch.nn.Module, batch: Any) -> Any:
    """Call the model on a batch: ``model(batch[0])`` for a ``(x, y)`` tuple/list, else ``model(batch)``."""
    if isinstance(batch, tuple | list):
        return model(batch[0])
    return model(batch)


class Objective:
    """The task loss J_0 = ℓ_0(f_θ(x), y) of one batch.

    Args:
        loss (callable): ``loss(output, batch) -> Tensor ()``, the scalar task loss.
        forward (callable, optional): ``forward(model, batch) -> output``; defaults to
            :func:`default_forward` (``model(x)`` for an ``(x, y)`` batch, ``model(batch)`` otherwise).
        name (str, optional): Name shown in logs (default: :obj:`"loss"`).
    """

    def __init__(
        self,
        loss: Callable[[Any, Any], torch.Tensor],
        forward: Callable[[torch.nn.Module, Any], Any] | None = None,
        name: str = "loss",
    ) -> None:
        if not callable(loss):
            raise TypeError(f"Objective: expected 'loss' to be callable (output, batch) -> Tensor (got {loss!r})")
        if forward is not None and not callable(forward):
            raise TypeError(f"Objective: expected 'forward' to be callable (model, batch) -> output (got {forward!r})")
        self.loss = loss
        self.forward = forward or default_forward
        self.name = name

    def __call__(self, output: Any, batch: Any) -> torch.Tensor:
        return self.loss(output, batch)

    def __repr__(self) -> str:
        loss_name = getattr(self.loss, "__name__", type(self.loss).__name__)
        return f"Objective(loss={loss_name})"


def _distinct_default_names(constraints: tuple[Constraint, ...]) -> tuple[Constraint, ...]:
    """Give the second, third, … unnamed constraint of a default name a suffix ``_2``, ``_3``, ….

    Two different constraints on one target (``lower`` and ``bound`` written apart, say) then need no
    ``name=``; the same constraint listed twice, or two constraints named alike, are still refused.
    """
    for index, constraint in enumerate(constraints):
        if not isinstance(constraint, Constraint):
            raise TypeError(
                f"ConstrainedProblem: expected 'constraints[{index}]' to be an Equality, Inequality, Resilient "
                f"or Penalty (got {type(constraint).__name__})"
            )
    taken = {c.key for c in constraints if c.name is not None}
    out, first = [], {}
    for constraint in constraints:
        key = constraint.key
        if constraint.name is None and key in first and first[key] != constraint:
            suffix = 2
            while f"{key}_{suffix}" in taken or f"{key}_{suffix}" in first:
                suffix += 1
            constraint = dataclasses.replace(constraint, name=f"{key}_{suffix}")
            key = constraint.key
        first.setdefault(key, constraint)
        out.append(constraint)
    return tuple(out)


class ConstrainedProblem:
    """An objective and the constraints it is minimised under. Validated, immutable.

    Args:
        objective (Objective or callable): The task loss; a bare callable ``loss(output, batch)`` is
            wrapped in :class:`Objective`.
        constraints (sequence of Constraint, optional): The constraints; each one is a vector of
            ``L`` constraints with one dense multiplier (default: none).

    Raises:
        TypeError: If the objective is not callable or a constraint is not a :class:`Constraint`.
        ValueError: If a constraint is listed twice or two constraints share a name.

    Examples:
        >>> import constrained_eq as ceq
        >>> problem = ceq.ConstrainedProblem(lambda out, batch: out.mean(), [ceq.Equality(ceq.gammas)])
        >>> problem
        ConstrainedProblem(objective=Objective(loss=<lambda>), constraints=[Equality(target=gammas)])
    """

    def __init__(self, objective: Objective | Callable, constraints: Sequence[Constraint] = ()) -> None:
        if not isinstance(objective, Objective):
            if not callable(objective):
                raise TypeError(
                    "ConstrainedProblem: expected 'objective' to be an Objective or a callable "
                    f"loss(output, batch) (got {type(objective).__name__})"
                )
            objective = Objective(objective)
        if isinstance(constraints, Constraint):
            constraints = [constraints]
        if not isinstance(constraints, Sequence) or isinstance(constraints, str):
            raise TypeError(
                "ConstrainedProblem: expected 'constraints' to be a list of constraints "
                f"(got {type(constraints).__name__})"
            )
        self._objective = objective
        self._constraints = _distinct_default_names(tuple(constraints))
        self.sanity_check_constraints()

    def sanity_check_constraints(self) -> None:
        """Check the constraint list: right types, no constraint twice, distinct names."""
        seen: dict[str, Constraint] = {}
        for constraint in self._constraints:
            if constraint.key in seen:
                what = "is listed twice" if seen[constraint.key] == constraint else "shares its name with another"
                raise ValueError(
                    f"ConstrainedProblem: constraint {constraint!r} {what} (name {constraint.key!r}); "
                    "give each constraint a distinct name=..."
                )
            seen[constraint.key] = constraint

    @property
    def objective(self) -> Objective:
        return self._objective

    @property
    def constraints(self) -> tuple[Constraint, ...]:
        return self._constraints

    def named_constraints(self) -> Iterator[tuple[str, Constraint]]:
        """Yield ``(name, constraint)`` pairs in declaration order."""
        for constraint in self._constraints:
            yield constraint.key, constraint

    def __repr__(self) -> str:
        constraints = ", ".join(map(repr, self._constraints))
        return f"ConstrainedProblem(objective={self._objective!r}, constraints=[{constraints}])"
