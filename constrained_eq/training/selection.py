"""Which evaluated model ``fit`` keeps: by one logged column, or feasibility first.

``select="feasible"`` ranks every evaluated candidate — the iterate at each evaluation and, with
iterate averaging, the averaged model — by the key

.. math::
    (\\,[\\text{infeasible}],\\; v_{\\max}\\,[\\text{infeasible}],\\; s\\cdot J\\,)

compared lexicographically: a feasible candidate (every counted constraint's validation violation
≤ τ, see :mod:`constrained_eq.core.solver.split_feasibility`) beats every infeasible one and feasible ones are ranked by
the objective column J (``s = ±1`` by ``select_mode``); if none is feasible, the least-violating one
(smallest largest violation :math:`v_{\\max}`) is kept. Any other ``select`` is a column, ranked by
``s · value`` alone.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from constrained_eq.core.solver.split_feasibility import Measurement

__all__ = ["FEASIBLE", "candidate_column", "selection_key", "describe_selection"]

FEASIBLE = "feasible"


def candidate_column(column: str, prefix: str) -> str:
    """The column of a candidate: ``val_loss`` of the averaged model (prefix ``val_avg``) is ``val_avg_loss``."""
    if prefix == "val" or not column.startswith("val_"):
        return column
    return f"{prefix}_{column.removeprefix('val_')}"


def selection_key(select: str, objective: str, sign: float, row: Mapping[str, float], prefix: str,
                  measured: Measurement | None) -> tuple[float, float, float] | None:
    """The key of one candidate (smaller is better), or ``None`` when its column was not logged or is NaN."""
    column = candidate_column(objective if select == FEASIBLE else select, prefix)
    value = row.get(column)
    if value is None or not math.isfinite(value):
        return None
    if select != FEASIBLE or measured is None or measured.feasible:
        return (0.0, 0.0, sign * value)
    worst = measured.worst
    return (1.0, worst if math.isfinite(worst) else math.inf, sign * value)


def describe_selection(select: str, objective: str, mode: str, state: Mapping[str, Any]) -> str:
    """One plain sentence: what was selected and why (for the summary and ``metrics.json``)."""
    epoch, candidate = state.get("best_epoch"), state.get("best_candidate") or "iterate"
    if epoch is None:
        return "no evaluation was selected (every selection column was missing or not finite)"
    which = f"epoch {epoch} ({'averaged model' if candidate == 'averaged' else 'iterate'})"
    if select != FEASIBLE:
        return f"{which}: the {'largest' if mode == 'max' else 'smallest'} {select}"
    key = state.get("best_key") or (0.0, 0.0, 0.0)
    tolerance = state.get("tolerance")
    if key[0] == 0.0:
        return (f"{which}: the {'largest' if mode == 'max' else 'smallest'} {objective} among the feasible "
                f"evaluations (every constraint's validation violation ≤ {tolerance:g})")
    return (f"{which}: NO evaluation was feasible (validation violation ≤ {tolerance:g}); kept the "
            f"least-violating one, largest violation {key[1]:.4g}")
