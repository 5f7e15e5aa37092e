"""The structure of a solved problem: what a checkpoint must agree on, and what a report reads.

A checkpoint is keyed on the problem's *structure* — each constraint's name, kind, fields (bound, ρ,
weight, …), what its target reads and its size L, how the formulation enforces it, and the
formulation with its options — not on reprs of callables: renaming the loss function or a lambda
changes nothing that training state depends on, while a different bound, size or formulation option
does, and is refused with the difference named.
"""

from __future__ import annotations

import dataclasses
from typing import Any

__all__ = ["describe", "differences"]


def _fields(constraint: Any) -> dict[str, Any]:
    if not dataclasses.is_dataclass(constraint):
        return {}
    return {f.name: getattr(constraint, f.name) for f in dataclasses.fields(constraint)
            if f.name not in ("target", "name")}


def describe(solver: Any) -> dict[str, Any]:
    """The solver's problem structure as plain data (JSON-ready).

    Returns:
        dict: ``{"formulation": {"name", "options"}, "constraints": [{"name", "kind", "target", "reads",
        "homotopy", "mode", "size", "rho", **fields}, …]}`` in declaration order.
    """
    from constrained_eq.core.solver.split_feasibility import is_homotopy

    constraints = []
    for plan in solver.plans:
        constraint = plan.constraint
        constraints.append({
            "name": plan.key, "kind": type(constraint).__name__, "target": constraint.target.name,
            "reads": list(constraint.target.reads), "homotopy": is_homotopy(plan), "mode": plan.mode,
            "size": int(solver.constraint_sizes[plan.key]), "rho": plan.rho, **_fields(constraint)})
    formulation = solver.formulation
    return {"formulation": {"name": formulation.name, "options": dict(formulation.options())},
            "constraints": constraints}


def differences(old: Any, new: Any, prefix: str = "") -> list[str]:
    """Where two structures differ, as ``path: old -> new`` lines (constraints matched by name)."""
    if isinstance(old, list) and isinstance(new, list) and all(isinstance(x, dict) and "name" in x
                                                               for x in [*old, *new]):
        old, new = {x["name"]: x for x in old}, {x["name"]: x for x in new}
    if isinstance(old, dict) and isinstance(new, dict):
        return [d for k in sorted(set(old) | set(new), key=str)
                for d in differences(old.get(k), new.get(k), f"{prefix}.{k}" if prefix else str(k))]
    return [] if old == new else [f"{prefix}: {old!r} -> {new!r}"]
