"""PyTorch Lightning: a ``LightningModule`` whose training step is one :class:`~constrained_eq.Solver` step.

``pip install "constrained_eq[lightning]"``. Subclass :class:`SolverModule` (or use it as it is), hand it
the model, the problem and a formulation by name, and train with ``lightning.pytorch.Trainer``:

* **Manual optimization.** The Solver owns the primal–dual step (forward, both Lagrangians, backward,
  the steps of θ, γ/u and λ), so ``automatic_optimization`` is off and ``training_step`` takes
  ``solver.step(batch)`` through the one optimizer Lightning is given, :class:`SolverStep`, so that
  ``trainer.global_step`` counts Solver steps. On one process the trajectory is the plain loop's, bitwise.
* **Checkpoints.** ``on_save_checkpoint`` stores the Solver's state (multipliers λ, slacks u, every
  optimizer, the feasibility monitor, step and epoch counters, RNG states) under
  :data:`CHECKPOINT_KEY`; the weights stay in Lightning's ``state_dict``. ``Trainer.fit(ckpt_path=...)``
  resumes where the run stopped.
* **Logging.** Every step logs ``loss``, ``lagrangian`` and ``<constraint>.value.<i>`` /
  ``.lambda.<i>`` / ``.slack.<i>`` (the columns of a run folder's ``history.csv``) to Lightning's
  loggers; every evaluation logs ``val_loss``, ``val_feasible`` (1.0 or 0.0) and
  ``val/<constraint>/value[i]`` / ``violation[i]``, measured over the whole validation split.
* **DDP.** Under ``strategy="ddp"`` Lightning's own wrapper only forwards the step (with manual
  optimization it reduces nothing unless ``manual_backward`` runs). :meth:`SolverModule.on_fit_start`
  hands the Solver the model wrapped in its own ``DistributedDataParallel``, as a ``torchrun`` script
  does (docs/distributed.md), so every rank ends with the same θ, γ, λ and u.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.strategies import DDPStrategy, SingleDeviceStrategy
from torch import nn

from constrained_eq._utils.distributed import is_distributed
from constrained_eq.core.problem.problem import ConstrainedProblem
from constrained_eq.core.solver.engine import Solver
from constrained_eq.core.solver.split_feasibility import DEFAULT_TOLERANCE
from constrained_eq.integrations._common import SplitTotals, restore_solver, solver_checkpoint, step_columns

__all__ = ["SolverModule", "SolverStep", "CHECKPOINT_KEY"]

CHECKPOINT_KEY = "constrained_eq_solver"
_STRATEGIES = (SingleDeviceStrategy, DDPStrategy)
_SCALED = ("16-mixed", "16")  # precisions whose GradScaler would have to scale the Solver's backward


class SolverStep(torch.optim.Optimizer):
    """The optimizer Lightning sees: ``step(closure)`` runs the closure, one Solver step, and returns its record.

    The Solver steps θ, γ/u and λ with its own optimizers; stepping through this one lets Lightning's
    manual optimization count the step (``trainer.global_step``). It holds one empty tensor and no state.
    """

    def __init__(self) -> None:
        super().__init__([torch.zeros(0)], {})

    def step(self, closure: Callable[[], Any] | None = None) -> Any:  # type: ignore[override]
        return closure() if closure is not None else None


class SolverModule(pl.LightningModule):
    """A ``LightningModule`` that trains ``model`` on ``problem`` with a :class:`~constrained_eq.Solver`.

    The Solver is built in :meth:`configure_optimizers`, once Lightning has moved the module to its device
    and precision; :attr:`solver` is ``None`` before. Override :meth:`training_step` or
    :meth:`validation_step` and call ``super()`` to add your own logging.

    Args:
        model (nn.Module): The model; its parameters are the primal variables θ (registered as ``self.model``).
        problem (ConstrainedProblem): The objective and the constraints.
        formulation (str or Formulation, optional): Any name the Solver takes (``"lagrangian"``,
            ``"resilient"``, ``"augmented_lagrangian"``, ``"penalty"``, ``"schedule"``, ``"none"``, …)
            (default: :obj:`"lagrangian"`).
        primal_optimizer (Any, optional): As for the Solver: a name, an optimizer over ``model.parameters()``
            or a factory ``params -> Optimizer`` (default: Adam, lr 1e-3).
        dual_lr (float, optional): The dual step size η_d (default: :obj:`1e-3`).
        feasibility_tol (float, optional): The validation verdict's tolerance τ (default: 1e-3).
        log_constraints (bool, optional): Log γ, λ and u every step (default: :obj:`True`).
        **solver_options: Further keywords of the Solver (``example_batch=``, ``rho=``, ``variable_lr=``, …).
    """

    def __init__(self, model: nn.Module, problem: ConstrainedProblem, formulation: Any = "lagrangian",
                 primal_optimizer: Any = None, dual_lr: float = 1e-3, *, feasibility_tol: float = DEFAULT_TOLERANCE,
                 log_constraints: bool = True, **solver_options: Any) -> None:
        super().__init__()
        if not isinstance(problem, ConstrainedProblem):
            raise TypeError(f"SolverModule: expected 'problem' to be a ConstrainedProblem "
                            f"(got {type(problem).__name__})")
        self.automatic_optimization = False
        self.model = model
        self.problem = problem
        self.feasibility_tol = feasibility_tol
        self.log_constraints = log_constraints
        self._solver_arguments = {"formulation": formulation, "primal_optimizer": primal_optimizer,
                                  "dual_lr": dual_lr, **solver_options}
        self.solver: Solver | None = None
        self._pending_state: dict[str, Any] | None = None
        self._totals: SplitTotals | None = None

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        return self.model(*args, **kwargs)

    # ------------------------------------------------------------------ the Solver
    def build_solver(self) -> Solver:
        """Build the Solver on the model as it stands (device, dtype) and load a checkpoint's state if one waits."""
        if self.solver is None:
            self.solver = Solver(self.problem, self.model, **self._solver_arguments)
            if self._pending_state is not None:
                restore_solver(self.solver, self._pending_state)
                self._pending_state = None
        return self.solver

    def configure_optimizers(self) -> SolverStep:
        """Build the Solver; Lightning gets a :class:`SolverStep`, through which each Solver step is taken."""
        self.build_solver()
        return SolverStep()

    def on_fit_start(self) -> None:
        """Refuse strategies other than single-device and DDP; under DDP, give the Solver a DDP-wrapped model."""
        strategy = self.trainer.strategy
        if not isinstance(strategy, _STRATEGIES):
            raise ValueError(f"SolverModule: expected the Trainer's strategy to be single-device or DDP "
                             f"(strategy='ddp') (got {type(strategy).__name__}); the Solver steps the whole "
                             "model on every rank, which sharded strategies do not hold")
        if self.trainer.precision in _SCALED:
            raise ValueError(f"SolverModule: the Solver runs its own backward, which the fp16 gradient scaler of "
                             f"precision={self.trainer.precision!r} does not scale; use precision='bf16-mixed' or "
                             "'32-true'")
        if isinstance(strategy, DDPStrategy) and is_distributed():
            device_ids = [self.device.index] if self.device.type == "cuda" else None
            # wrapped after the Solver is built, as in a torchrun script; static_graph: see _utils.distributed
            self.solver.model = nn.parallel.DistributedDataParallel(self.model, device_ids=device_ids,
                                                                    static_graph=True)

    def teardown(self, stage: str) -> None:
        """Give the Solver the bare model back (DDP's reducer holds the process group)."""
        if self.solver is not None:
            self.solver.model = self.model

    # ------------------------------------------------------------------ training
    def on_train_epoch_start(self) -> None:
        self.solver.set_epoch(self.current_epoch)

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor | None:
        """One Solver step on ``batch``; logs the step's columns; returns the objective (``None`` if skipped).

        The step goes through Lightning's optimizer step (the :class:`SolverStep` of
        :meth:`configure_optimizers`), so ``trainer.global_step`` counts Solver steps: ``max_steps``,
        checkpoints every n steps and the loggers' step axis follow the Solver.
        """
        record = self.optimizers().step(closure=partial(self.solver.step, batch))
        if record.skipped:  # a non-finite batch under Solver(on_nonfinite="skip"): nothing to log
            return None
        columns = step_columns(record)
        self.log("loss", columns.pop("loss"), prog_bar=True, on_step=True, on_epoch=False)
        self.log_dict(columns if self.log_constraints else {"lagrangian": columns["lagrangian"]}, on_step=True,
                      on_epoch=False)
        return record.loss

    # ------------------------------------------------------------------ validation
    def on_validation_epoch_start(self) -> None:
        self._totals = SplitTotals(self.build_solver())

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        """Add the batch's objective and constraint targets to the split's sums."""
        objective = self.problem.objective
        output = objective.forward(self.model, batch)
        self._totals.add(self.model, batch, output, objective(output, batch))

    def on_validation_epoch_end(self) -> None:
        """Log ``val_loss``, ``val_feasible`` and every constraint's value and violation over the split."""
        loss, measured = self._totals.result(self.solver, self.model, self.feasibility_tol)
        self._totals = None
        # the sums were added over ranks already, so every rank holds the same numbers; the max over ranks
        # keeps them exactly (a mean could round) and every rank's callbacks see them
        self.log_dict({"val_loss": loss, "val_feasible": float(measured.feasible), **measured.columns("val")},
                      sync_dist=True, reduce_fx="max")

    # ------------------------------------------------------------------ checkpoints
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint[CHECKPOINT_KEY] = solver_checkpoint(self.build_solver(), keep_rng=True)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Keep the Solver's state until the Solver is built (after Lightning has restored the weights)."""
        if CHECKPOINT_KEY not in checkpoint:
            raise ValueError(f"SolverModule: the checkpoint holds no '{CHECKPOINT_KEY}' entry (it was not written "
                             "by a SolverModule); start the run without ckpt_path")
        if self.solver is None:
            self._pending_state = checkpoint[CHECKPOINT_KEY]
        else:  # built by an earlier fit: Lightning loads the weights next, over the ones kept here
            restore_solver(self.solver, checkpoint[CHECKPOINT_KEY])
