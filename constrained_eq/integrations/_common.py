"""What both integrations share: per-step columns, the validation split's constraints, the solver's checkpoint.

* :func:`step_columns` names a :class:`~constrained_eq.core.solver.engine.StepRecord` the way a run folder's
  ``history.csv`` and ``steps.csv`` do (``<constraint>.value.<i>``, ``<constraint>.lambda.<i>``,
  ``<constraint>.slack.<i>``), as device tensors: nothing is read back to the host here.
* :class:`SplitTotals` sums the objective and every batch-reading target over the batches of one
  evaluation, adds the sums over ranks and judges the split as
  :func:`~constrained_eq.core.solver.split_feasibility.measure` does (``val/<constraint>/value[i]``,
  ``val/<constraint>/violation[i]``). A framework hands out validation batches one at a time, so the
  loader-wide ``measure`` cannot be called; on one process the result is the same, bitwise.
* :func:`solver_checkpoint` / :func:`restore_solver` keep the Solver's state without what the framework's
  own checkpoint already holds (the model's weights, and with Accelerate every process's RNG).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist

from constrained_eq._utils.distributed import is_distributed, unwrap
from constrained_eq._utils.loaders import batch_size
from constrained_eq._utils.rng import get_rng_state
from constrained_eq.core.solver.engine import Solver, StepRecord
from constrained_eq.core.solver.split_feasibility import Measurement, counted, element_violations

__all__ = ["step_columns", "SplitTotals", "solver_checkpoint", "restore_solver"]


def step_columns(record: StepRecord) -> dict[str, torch.Tensor]:
    """``loss``, ``lagrangian`` and per-element γ (values), λ and u of a step, named as in ``history.csv``."""
    columns = {"loss": record.loss.detach(), "lagrangian": record.lagrangian.detach()}
    for what, group in (("value", record.values), ("lambda", record.multipliers), ("slack", record.slacks)):
        for key, tensor in group.items():
            flat = tensor.detach().reshape(-1)
            columns.update({f"{key}.{what}.{i}": flat[i] for i in range(flat.numel())})
    return columns


class SplitTotals:
    """The objective and the constraint targets summed over the batches of one evaluation.

    Each batch adds ``n_b · loss_b`` and, per batch-reading constraint, ``target.totals(...)`` (a rate:
    numerator and denominator) or ``n_b · target(...)`` (an expectation). :meth:`result` adds the sums over
    ranks (one all-reduce) and reduces them as :func:`~constrained_eq.core.solver.split_feasibility.split_values`
    does; parameter-only targets (γ, a weight norm) are read once, on the model.

    Args:
        solver: The solver whose plans say how each constraint is enforced (penalties are not measured).
    """

    def __init__(self, solver: Solver) -> None:
        self.plans = [p for p in solver.plans if not p.constraint.is_penalty]
        self.batch_plans = [p for p in self.plans if p.constraint.target.needs_batch]
        self.sums: dict[str, torch.Tensor] = {}
        self.loss_sum: torch.Tensor | None = None
        self.count = 0

    @torch.no_grad()
    def add(self, model: torch.nn.Module, batch: Any, output: Any, loss: torch.Tensor) -> None:
        """Add one batch (``output`` is the model's output on it, ``loss`` the objective)."""
        n = batch_size(batch)
        for plan in self.batch_plans:
            target = plan.constraint.target
            part = (target.totals(model, batch, output) if target.totals is not None
                    else target(model, batch, output).reshape(-1) * n).detach().reshape(-1)
            self.sums[plan.key] = part if plan.key not in self.sums else self.sums[plan.key] + part
        value = loss.detach() * n
        self.loss_sum = value if self.loss_sum is None else self.loss_sum + value
        self.count += n

    def _all_reduce(self) -> tuple[torch.Tensor | None, dict[str, torch.Tensor], int]:
        """The sums added over ranks (one float64 all-reduce); the local sums themselves on one process."""
        if not is_distributed():
            return self.loss_sum, self.sums, self.count
        keys = list(self.sums)
        loss = self.loss_sum if self.loss_sum is not None else torch.zeros(())
        device = loss.device
        parts = [loss.reshape(1), torch.tensor([float(self.count)], device=device),
                 *(self.sums[k].to(device) for k in keys)]
        flat = torch.cat([p.double() for p in parts])
        dist.all_reduce(flat, op=dist.ReduceOp.SUM)
        sizes = [p.numel() for p in parts]
        chunks = torch.split(flat, sizes)
        sums = {k: chunks[2 + i].to(self.sums[k].dtype) for i, k in enumerate(keys)}
        return chunks[0][0].to(loss.dtype), sums, int(chunks[1][0])

    @torch.no_grad()
    def result(self, solver: Solver, model: torch.nn.Module, tolerance: float) -> tuple[float, Measurement]:
        """The split's mean objective and its :class:`Measurement` (a collective under torch.distributed)."""
        loss_sum, sums, count = self._all_reduce()
        values = {p.key: p.constraint.target(model).reshape(-1) for p in self.plans
                  if not p.constraint.target.needs_batch}
        for plan in self.batch_plans:
            if plan.key in sums:
                target = plan.constraint.target
                total = sums[plan.key]
                values[plan.key] = target.from_totals(total) if target.from_totals is not None \
                    else total / max(count, 1)
        violations = {p.key: element_violations(p, values[p.key], solver.slacks.get(p.key)) for p in self.plans
                      if p.key in values}
        keys = list(values)
        # float32 first, as measure() reads them; float64 holds those and the loss sum exactly
        flat = [(loss_sum if loss_sum is not None else torch.full((), float("nan"))).double().reshape(1).cpu()]
        flat += [values[k].float().double().reshape(-1).cpu() for k in keys]
        flat += [violations[k].float().double().reshape(-1).cpu() for k in keys]
        host = torch.cat(flat).tolist()  # the one read back to the host
        chunks, start = [], 1
        for tensor in flat[1:]:
            chunks.append(host[start:start + tensor.numel()])
            start += tensor.numel()
        measured = Measurement(dict(zip(keys, chunks[:len(keys)], strict=True)),
                               dict(zip(keys, chunks[len(keys):], strict=True)),
                               [k for k in counted(self.plans) if k in values], tolerance)
        return host[0] / max(count, 1), measured


def solver_checkpoint(solver: Solver, *, keep_rng: bool) -> dict[str, Any]:
    """``solver.state_dict()`` without the model's weights (the framework's checkpoint holds them).

    ``keep_rng=False`` also leaves out the RNG states, for a framework that saves every process's own.
    """
    state = solver.state_dict()
    del state["model"]
    if not keep_rng:
        del state["rng"]
    return state


def restore_solver(solver: Solver, state: dict[str, Any]) -> None:
    """Load a :func:`solver_checkpoint`, keeping the model's weights and, where left out, the RNG as they are now.

    Call it once the framework has restored the model (its weights are taken as they stand).
    """
    full = dict(state)
    full["model"] = unwrap(solver.model).state_dict()
    full.setdefault("rng", get_rng_state())
    solver.load_state_dict(full)
