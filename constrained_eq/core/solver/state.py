"""A :class:`~constrained_eq.core.solver.engine.Solver`'s checkpoint: what ``state_dict`` holds, how it is restored.

The state is the model (the bare module's weights: no ``module.`` prefix under DDP, so a checkpoint
taken on N processes loads on one and back), the multipliers and penalty coefficients (the Cooper
problem), the slacks, every optimizer, the step and epoch counters, the RNG states and the
feasibility monitor, keyed on the problem's structure (:func:`constrained_eq.core.solver.structure.describe`).

Both functions read the solver's attributes ``model``, ``cmp``, ``slacks``, ``optimizer``, ``monitor``,
``step_count``, ``epoch`` (and what ``describe`` reads); they import nothing from the engine.
"""

from __future__ import annotations

from typing import Any

import torch

from constrained_eq._utils.distributed import unwrap
from constrained_eq._utils.rng import get_rng_state, set_rng_state
from constrained_eq.core.solver.structure import describe, differences

__all__ = ["solver_state_dict", "check_structure", "load_solver_state"]


def solver_state_dict(solver: Any) -> dict[str, Any]:
    """Model, multipliers, slacks, every optimizer, step/epoch counters, RNG states and the structure."""
    return {
        "structure": describe(solver),
        "model": unwrap(solver.model).state_dict(),
        "cmp": solver.cmp.state_dict(),
        "slacks": {k: u.detach().clone() for k, u in solver.slacks.items()},
        "optimizer": solver.optimizer.state_dict(),
        "step": solver.step_count,
        "epoch": solver.epoch,
        "rng": get_rng_state(),
        "feasibility": solver.monitor.state_dict(),
    }


def check_structure(solver: Any, state: dict[str, Any]) -> None:
    """Refuse a checkpoint without a structure, or taken from another problem (naming the differences)."""
    if "structure" not in state:
        raise ValueError("Solver.load_state_dict: the checkpoint holds no problem structure (it was written "
                         "by an older version); start the run again")
    changes = differences(state["structure"], describe(solver))
    if changes:
        raise ValueError("Solver.load_state_dict: the checkpoint was taken from another problem: "
                         + "; ".join(changes))


def load_solver_state(solver: Any, state: dict[str, Any]) -> None:
    """Restore a :func:`solver_state_dict` into ``solver`` after :func:`check_structure`."""
    check_structure(solver, state)
    unwrap(solver.model).load_state_dict(state["model"])
    solver.cmp.load_state_dict(state["cmp"])
    with torch.no_grad():
        for key, value in state["slacks"].items():
            solver.slacks[key].copy_(value)
    solver.optimizer.load_state_dict(state["optimizer"])
    solver.step_count = int(state["step"])
    solver.epoch = int(state["epoch"])
    set_rng_state(state["rng"])
    if "feasibility" in state:
        solver.monitor.load_state_dict(state["feasibility"])
