"""Hugging Face Accelerate: the Solver steps a model, optimizer and loader prepared by an ``Accelerator``.

``pip install "constrained_eq[accelerate]"``. Build the Solver on the bare model (on
``accelerator.device``), then :func:`prepare` it with the optimizer and loaders, and register
:class:`SolverCheckpoint` so that ``accelerator.save_state`` / ``load_state`` carry the Solver::

    solver = ceq.Solver(problem, model.to(accelerator.device), "lagrangian", optimizer, dual_lr=1e-2)
    model, optimizer, loader = prepare(accelerator, solver, optimizer, loader)
    accelerator.register_for_checkpointing(SolverCheckpoint(solver))
    for batch in loader:
        solver.step(batch)

Under several processes ``accelerator.prepare`` wraps the model in ``DistributedDataParallel``; the Solver
averages the violations and slack gradients itself, so every rank holds the same θ, γ, λ and u
(docs/distributed.md). What Accelerate's design leaves out, refused here with the way round:

* the Solver runs its own backward and steps (one primal–dual step per batch), so Accelerate's gradient
  scaler (``mixed_precision="fp16"``) and gradient accumulation cannot act on them: use ``"bf16"`` or
  ``"no"``, and a larger batch;
* DeepSpeed, FSDP, Megatron-LM and XLA shard or compile the model and its optimizer; the Solver steps the
  whole model on every rank (DDP);
* the multipliers and slacks are made on the model's device when the Solver is built, so the model is
  moved to ``accelerator.device`` first;
* on CPU, Accelerate joins the processes of a launch only under ``Accelerator(cpu=True)``; otherwise each
  trains alone, which ``prepare`` refuses when ``WORLD_SIZE`` says the process is one of several.
"""

from __future__ import annotations

import os
from typing import Any

from accelerate import Accelerator
from torch import nn

from constrained_eq._utils.distributed import unwrap
from constrained_eq.core.solver.engine import Solver
from constrained_eq.integrations._common import restore_solver, solver_checkpoint

__all__ = ["prepare", "SolverCheckpoint", "SHARDED"]

SHARDED = ("DEEPSPEED", "FSDP", "MEGATRON_LM", "XLA")  # DistributedType values the Solver cannot step under


def _check_accelerator(accelerator: Any) -> None:
    """Refuse what the Solver cannot run under: fp16 scaling, gradient accumulation, sharded strategies."""
    if not isinstance(accelerator, Accelerator):
        raise TypeError(f"prepare: expected 'accelerator' to be an accelerate.Accelerator "
                        f"(got {type(accelerator).__name__})")
    if accelerator.distributed_type.value in SHARDED:
        raise ValueError(f"prepare: expected the Accelerator to run on one process or data-parallel (DDP) "
                         f"(got {accelerator.distributed_type.value}); the Solver steps the whole model on every "
                         "rank, which sharded strategies do not hold")
    launched = int(os.environ.get("WORLD_SIZE", "1") or 1)
    if launched > 1 and accelerator.num_processes == 1:
        raise ValueError(f"prepare: this process was launched as one of WORLD_SIZE={launched}, but the Accelerator "
                         "runs alone, so every process would train by itself; on CPU build it with "
                         "Accelerator(cpu=True)")
    if accelerator.scaler is not None:
        raise ValueError("prepare: the Solver runs its own backward, which Accelerate's fp16 gradient scaler does "
                         "not scale; use Accelerator(mixed_precision='bf16') or 'no'")
    if accelerator.gradient_accumulation_steps != 1:
        raise ValueError(f"prepare: expected gradient_accumulation_steps=1 (got "
                         f"{accelerator.gradient_accumulation_steps}); the Solver takes one primal-dual step per "
                         "batch, so use a larger batch instead")


def _check_device(model: nn.Module, accelerator: Accelerator) -> None:
    """Refuse a model that is not on ``accelerator.device``: the Solver's λ and u live on the model's device."""
    device, target = next((p.device for p in model.parameters()), None), accelerator.device
    # "cpu" and "cpu:0" are one device; an accelerator's index counts
    moved = device is not None and (device.type != target.type or (device.type != "cpu" and device != target))
    if accelerator.device_placement and moved:
        raise ValueError(f"prepare: expected the Solver's model on accelerator.device ({accelerator.device}) "
                         f"(got {device}); build the Solver on model.to(accelerator.device), since its multipliers "
                         "and slacks are made on the model's device")


def prepare(accelerator: Accelerator, solver: Solver, *objects: Any) -> tuple[Any, ...]:
    """``accelerator.prepare(model, *objects)`` for the Solver's model; the Solver then steps the prepared model.

    Args:
        accelerator: The ``Accelerator`` (one process, or data-parallel on several).
        solver: A Solver built on the bare model, already on ``accelerator.device``.
        *objects: Optimizers, data loaders and schedulers to prepare along (as ``accelerator.prepare`` takes).

    Returns:
        The prepared model (a ``DistributedDataParallel`` on several processes), then the prepared objects.

    Raises:
        TypeError: If ``accelerator`` is not an ``Accelerator``.
        ValueError: Under fp16 gradient scaling, gradient accumulation, a sharded strategy, an Accelerator
            alone in a launch of several processes, or a model on another device than ``accelerator.device``.
    """
    _check_accelerator(accelerator)
    model = unwrap(solver.model)
    _check_device(model, accelerator)
    prepared = accelerator.prepare(model, *objects)
    prepared = prepared if isinstance(prepared, tuple) else (prepared,)
    solver.model = prepared[0]  # after the Solver is built, as a torchrun script wraps it
    return prepared


class SolverCheckpoint:
    """The Solver's state for ``accelerator.register_for_checkpointing``.

    ``accelerator.save_state`` already writes the model's weights and every process's RNG states, and
    ``load_state`` restores them before the registered objects; this object carries the rest: multipliers
    λ, slacks u, every optimizer of the Solver, the feasibility monitor and the step and epoch counters.
    Registering the Solver itself would also work, but would write the weights twice and restore rank 0's
    RNG on every rank.

    Args:
        solver: The Solver whose state is saved and restored.
    """

    def __init__(self, solver: Solver) -> None:
        if not isinstance(solver, Solver):
            raise TypeError(f"SolverCheckpoint: expected 'solver' to be a Solver (got {type(solver).__name__})")
        self.solver = solver

    def state_dict(self) -> dict[str, Any]:
        return solver_checkpoint(self.solver, keep_rng=False)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        restore_solver(self.solver, state)
