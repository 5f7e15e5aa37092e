"""A compiled Solver step: ``Solver(..., compile=True)``.

Two ``torch.compile`` regions (default inductor backend) replace the eager pieces of one
simultaneous step, with the backward pass between them:

1. the **Lagrangians**: the objective's forward and loss, every constraint target, the penalties
   and slack costs (:meth:`ProblemCMP.compute_cmp_state`), then Cooper's primal Lagrangian
   ℒ_p = J_0 + Σ penalties + Σ λᵀh (+ c/2‖h‖² under the augmented Lagrangian) and its dual
   Lagrangian ℒ_d = Σ λᵀh.detach(); AOTAutograd compiles their backward too;
2. the **updates**: every primal optimizer's step (θ; γ and u) and the dual optimizer's step on λ,
   each ``torch.compile``-d as PyTorch's compiled-optimizer recipe does (``Optimizer.step`` breaks
   the graph around the update on purpose, so each optimizer is a graph of its own; the first step,
   which creates the optimizer state, compiles once more). The multipliers' projection (λ ≥ 0 on
   inequalities) stays eager.

Between them, eagerly: ``torch.autograd.backward([ℒ_p, ℒ_d])`` runs the compiled backward, and the
Solver's hook (gradient finiteness under ``check_finite=True``, the all-reduce of γ and u gradients
under ``torch.distributed``). The finiteness check of the loss and the violations reads the
compiled region's outputs, so the graphs hold no host sync. The update law is that of the eager
step; the trajectory agrees to float rounding (inductor fuses and reorders floating-point sums).

The alternating and extrapolation schemes evaluate the problem more than once per step with steps
in between; under them only the evaluations (step 1 without the Lagrangians) are compiled.

Learning rates: a compiled optimizer step specialises on a Python-float learning rate and would
recompile whenever a schedule changes it, so before each compiled step every float ``lr`` of the
primal optimizers (θ; γ and u) is turned into a 0-d tensor (``float(group["lr"])`` still reads it;
:class:`torch.optim.lr_scheduler` schedulers and ``training.scheduler`` write into it in place). The
dual optimizer's rate is fixed and stays a float.

Recompilation is bounded by ``torch._dynamo.config.recompile_limit`` (default 8 per code object): a
batch of another size (the last smaller one) compiles once more with dynamic shapes; every optimizer
instance takes its own entry of ``Optimizer.step``'s code, so a process that builds many compiled
Solvers (a test suite) ends up running later optimizer steps eagerly, with dynamo's warning. Past the
limit dynamo runs the region eagerly: that changes the speed, never the result.
"""

from __future__ import annotations

from typing import Any

import cooper
import torch

from constrained_eq.core.solver.cooper_bridge import ProblemCMP
from constrained_eq.core.solver.optimizers import FusedSimultaneousOptimizer

__all__ = ["BACKEND", "CompiledRoll", "compile_solver_step", "tensor_learning_rates_"]

BACKEND = "inductor"  # torch.compile's backend; the quick tests trace with "aot_eager" (no C++ compiler needed)


def _lagrangians(cmp: ProblemCMP, model: torch.nn.Module, batch: Any) -> tuple[Any, Any, Any]:
    """The CMP state of ``batch`` and its primal and dual Lagrangian stores (what the compiled region traces)."""
    cmp_state = cmp.compute_cmp_state(model, batch)
    return cmp_state, cmp_state.compute_primal_lagrangian(), cmp_state.compute_dual_lagrangian()


def tensor_learning_rates_(optimizers: list[torch.optim.Optimizer]) -> None:
    """Turn each float ``lr`` of ``optimizers`` into a 0-d tensor, in place: changing it then recompiles nothing."""
    for optimizer in optimizers:
        for group in optimizer.param_groups:
            lr = group.get("lr")
            if isinstance(lr, float | int) and not isinstance(lr, bool):
                group["lr"] = torch.tensor(float(lr))


class CompiledRoll:
    """Cooper's ``roll`` of the simultaneous (or unconstrained) scheme, with the two compiled regions above.

    Args:
        optimizer: The Solver's Cooper optimizer (its ``cmp``, primal and dual optimizers and the
            ``before_primal_step`` hook).
        check_finite: Raise :class:`~constrained_eq.core.solver.cooper_bridge.NonFiniteError` on a non-finite loss or
            violation, read from the compiled region's outputs (one host sync).
    """

    def __init__(self, optimizer: cooper.optim.CooperOptimizer, check_finite: bool) -> None:
        self.optimizer = optimizer
        self.cmp: ProblemCMP = optimizer.cmp
        self.check_finite = check_finite
        self.cmp.check_finite = False  # checked here, on the compiled region's outputs
        self._lagrangians = torch.compile(_lagrangians, backend=BACKEND)
        self._primal_steps = [torch.compile(o.step, backend=BACKEND) for o in optimizer.primal_optimizers]
        self._dual_steps = [torch.compile(o.step, backend=BACKEND) for o in optimizer.dual_optimizers or ()]

    def updates(self) -> None:
        """Every primal and dual optimizer's (compiled) step, then the multipliers' projection."""
        for step in self._primal_steps:
            step()
        for step in self._dual_steps:
            step()
        if self._dual_steps:
            with torch.no_grad():
                for multiplier in self.cmp.multipliers():
                    multiplier.post_step_()

    def __call__(self, compute_cmp_state_kwargs: dict[str, Any]) -> cooper.optim.RollOut:
        """One step: zero the gradients, the compiled Lagrangians, backward, the hook, the compiled updates."""
        tensor_learning_rates_(self.optimizer.primal_optimizers)  # also after load_state_dict or a float written in
        self.optimizer.zero_grad()
        cmp_state, primal_store, dual_store = self._lagrangians(self.cmp, **compute_cmp_state_kwargs)
        if self.check_finite:
            self.cmp._raise_if_nonfinite(cmp_state.misc["values"], cmp_state.loss)
        roots = [store.lagrangian for store in (primal_store, dual_store) if store.lagrangian is not None]
        torch.autograd.backward(roots)
        self.optimizer.before_primal_step()
        self.updates()
        return cooper.optim.RollOut(cmp_state.loss, cmp_state, primal_store, dual_store)


class _CompiledEvaluations:
    """``compute_cmp_state`` / ``compute_violations`` of a CMP, compiled, with the finiteness check outside."""

    def __init__(self, cmp: ProblemCMP, method: str, check_finite: bool) -> None:
        self.cmp, self.check_finite = cmp, check_finite
        self.compiled = torch.compile(getattr(type(cmp), method), backend=BACKEND)

    def __call__(self, model: torch.nn.Module, batch: Any) -> cooper.CMPState:
        state = self.compiled(self.cmp, model, batch)
        if self.check_finite:
            self.cmp._raise_if_nonfinite(state.misc["values"], state.loss)
        return state


def compile_solver_step(optimizer: cooper.optim.CooperOptimizer, check_finite: bool) -> CompiledRoll | None:
    """Compile the step of ``optimizer``'s scheme; returns the roll to call instead of ``optimizer.roll``.

    The simultaneous and unconstrained schemes get a :class:`CompiledRoll` (evaluation, Lagrangians and
    updates compiled); the alternating and extrapolation schemes keep Cooper's roll with compiled
    evaluations (``None`` is returned). The model is not touched (no ``_orig_mod.`` in its state dict).
    """
    if type(optimizer).roll in (FusedSimultaneousOptimizer.roll, cooper.optim.UnconstrainedOptimizer.roll):
        return CompiledRoll(optimizer, check_finite)
    cmp = optimizer.cmp
    cmp.check_finite = False
    cmp.compute_cmp_state = _CompiledEvaluations(cmp, "compute_cmp_state", check_finite)
    cmp.compute_violations = _CompiledEvaluations(cmp, "compute_violations", check_finite)
    return None
