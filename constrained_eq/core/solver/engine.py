"""The engine: one primal–dual step of a declared problem under a chosen formulation.

``Solver.step(batch)`` evaluates J_0 and the constraints, forms the Lagrangian of the formulation
and takes one step of every optimizer through Cooper's constrained optimizers:

* the **primal optimizer** (yours: Adam, SGD, …) on the model's weights θ;
* the **constrained-variable optimizer** on the variables constraints act on directly (ACE's γ)
  and on the slacks u — plain SGD by default, because ACE's algorithms take plain gradient steps
  there; an adaptive optimizer on γ normalises away the multiplier's pull (see docs/concepts.md);
* the **dual optimizer** on the multipliers λ — SGD ascent with ``dual_lr`` by default.

Everything stays on the model's device; the step reads nothing back to the host except one
finiteness flag when ``check_finite=True``.
"""

from __future__ import annotations

import inspect
from typing import Any, NamedTuple

import torch
from cooper.utils import ConstraintType

from constrained_eq._utils.checks import check_int, check_number
from constrained_eq._utils.distributed import all_reduce_mean_, is_distributed
from constrained_eq.core.formulations import Formulation, resolve_formulation
from constrained_eq.core.formulations.base import ConstraintPlan
from constrained_eq.core.problem.problem import ConstrainedProblem
from constrained_eq.core.solver import optimizers
from constrained_eq.core.solver.compiled import compile_solver_step
from constrained_eq.core.solver.cooper_bridge import NonFiniteError, ProblemCMP, StepValues
from constrained_eq.core.solver.feasibility import FeasibilityMonitor, Verdict
from constrained_eq.core.solver.keywords import check_keywords
from constrained_eq.core.solver.state import load_solver_state, solver_state_dict
from constrained_eq.core.solver.target_sizes import constraint_sizes

__all__ = ["Solver", "StepRecord", "DEFAULT_DUAL_LR"]

DEFAULT_DUAL_LR = 1e-2  # η_d of the multipliers: the Solver's and the problem files' default (stated here once)


class StepRecord(NamedTuple):
    """What one step measured, as tensors on the model's device (read them when you log).

    Attributes:
        step: Index of the step (0-based).
        loss: The task objective J_0 on the batch.
        lagrangian: The primal Lagrangian that was minimised (J_0 + penalties + slack costs + λᵀh).
        values: Target values per constraint, shape ``(L,)`` (e.g. γ for ``Equality(gammas)``).
        violations: Violations handed to the formulation per enforced constraint.
        multipliers: λ per constraint with a multiplier, after the step.
        slacks: u per constraint with a slack, after the step.
        skipped: ``True`` when a non-finite batch was skipped (``on_nonfinite="skip"``).
    """

    step: int
    loss: torch.Tensor
    lagrangian: torch.Tensor
    values: dict[str, torch.Tensor]
    violations: dict[str, torch.Tensor]
    multipliers: dict[str, torch.Tensor]
    slacks: dict[str, torch.Tensor]
    skipped: bool = False


def _check_dual_lr(dual_lr: Any) -> float:
    return check_number(dual_lr, "dual_lr", "Solver", above=0)


def _check_bool(value: Any, field_name: str) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"Solver: expected '{field_name}' to be True or False (got {value!r})")
    return value


def _check_types(problem: Any, model: Any) -> None:
    if not isinstance(problem, ConstrainedProblem):
        raise TypeError(f"Solver: expected 'problem' to be a ConstrainedProblem (got {type(problem).__name__})")
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"Solver: expected 'model' to be a torch.nn.Module (got {type(model).__name__})")


def _solver_keywords() -> list[str]:
    """The Solver's own keyword arguments (what an unknown keyword is compared with)."""
    return [p.name for p in inspect.signature(Solver.__init__).parameters.values()
            if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.name not in ("self", "problem", "model")]


def _check_choice(value: Any, field_name: str, choices: tuple[str, ...]) -> str:
    if value not in choices:
        listed = ", ".join(repr(c) for c in choices)
        raise ValueError(f"Solver: expected '{field_name}' to be one of {listed} (got {value!r})")
    return value


class Solver:
    """Solve a :class:`ConstrainedProblem` for ``model`` with a formulation picked by name.

    Args:
        problem (ConstrainedProblem): The objective and constraints.
        model (nn.Module): The model; its parameters are the primal variables θ.
        formulation (str or Formulation, optional): A registered name (``"lagrangian"``,
            ``"augmented_lagrangian"``, ``"resilient"``, ``"penalty"``, ``"schedule"``, ``"none"``, or one
            added with ``ceq.register_formulation``) or an instance (default: :obj:`"lagrangian"`).
        primal_optimizer (str, Optimizer, list or callable, optional): A name (``"adam"``, ``"sgd"``,
            ``"adamw"``, with ``primal_lr``), an optimizer over ``model.parameters()``, a list of
            optimizers over disjoint blocks of them (e.g. SGD on one, Adam on another; parameters in
            none are not trained), or a factory ``params -> Optimizer`` (default: Adam, lr 1e-3). The
            constrained variables (γ) are moved out into their own optimizer unless
            ``variable_optimizer="primal"``. Under ``constrained_optimizer="extrapolation"`` a name or
            factory gets its extrapolation counterpart (SGD → ExtraSGD, Adam → ExtraAdam); an instance
            must already be one.
        primal_lr (float, optional): Learning rate of a primal optimizer given by name (default: 1e-3).
        dual_lr (float, optional): Dual step size η_d > 0 (default: :data:`DEFAULT_DUAL_LR` = 1e-2, as in problem
            files).
        dual_optimizer (str, NuPI or callable, optional): ``"sgd"`` (ascent with ``dual_lr``),
            ``"nupi"`` (Cooper's nuPI with default gains; ``NuPI(kappa_p=…, kappa_i=…)`` to set them) or a
            factory ``params -> Optimizer`` with ``maximize=True`` (default: :obj:`"sgd"`).
        variable_optimizer (str or callable, optional): ``"sgd"`` (plain steps, as ACE),
            ``"primal"`` (γ stays in the primal optimizer, e.g. Adam) or a factory
            ``params -> Optimizer`` (default: :obj:`"sgd"`).
        variable_lr (float, optional): Step size η_p of the SGD on γ and u (default: the primal
            optimizer's first learning rate).
        constrained_optimizer (str, optional): Cooper's update scheme: ``"simultaneous"``,
            ``"alternating_primal_dual"``, ``"alternating_dual_primal"`` or ``"extrapolation"``
            (default: :obj:`"simultaneous"`).
        example_batch (Any, optional): A batch, or a ``DataLoader`` to read one from without
            advancing its shuffle order, used once to size constraints whose targets read the batch or the
            output (parameter-only targets need none).
        dual_every (int, optional): Take the dual step every ``dual_every`` steps (default: 1).
        check_finite (bool, optional): Refuse a step whose loss, violations or gradients are not
            finite (one host sync per step; turn off for a sync-free step on GPU) (default: True).
        on_nonfinite (str, optional): ``"raise"`` or ``"skip"`` such a batch (default: ``"raise"``).
        compile (bool, optional): Compile the step with ``torch.compile`` (inductor): the forward, loss,
            targets, penalties and both Lagrangians in one graph (with its backward), and every optimizer's
            update in another; the model object is left as it is. Same trajectory as eager to float
            rounding; the first steps compile (seconds). The alternating and extrapolation schemes compile
            the evaluations only. See :mod:`constrained_eq.core.solver.compiled` (default: False).
        **formulation_options: Options of a formulation given by name (``rho=``, ``epochs=``, …).
    """

    def __init__(
        self,
        problem: ConstrainedProblem,
        model: torch.nn.Module,
        formulation: str | Formulation = "lagrangian",
        primal_optimizer: Any = None,
        dual_lr: float = DEFAULT_DUAL_LR,
        *,
        primal_lr: float | None = None,
        dual_optimizer: Any = None,
        variable_optimizer: Any = "sgd",
        variable_lr: float | None = None,
        constrained_optimizer: str = "simultaneous",
        example_batch: Any = None,
        dual_every: int = 1,
        check_finite: bool = True,
        on_nonfinite: str = "raise",
        compile: bool = False,
        **formulation_options: Any,
    ) -> None:
        _check_types(problem, model)
        self.compile = _check_bool(compile, "compile")
        self.problem = problem
        self.model = model
        check_keywords(formulation, formulation_options, _solver_keywords())
        self.formulation = resolve_formulation(formulation, **formulation_options)
        self._check_settings(dual_lr, constrained_optimizer, on_nonfinite, dual_every, check_finite)
        self.step_count = 0
        self.epoch = 0
        self.plans: list[ConstraintPlan] = [self.formulation.plan(c) for c in problem.constraints]
        # the constraints whose targets read the batch: step() refuses to run without one
        self._batch_readers = [p.key for p in self.plans if "batch" in p.constraint.target.reads]
        self._build_constraints(example_batch)
        self.variables = self._constrained_variables()
        self.formulation.attach_variables(self.variables, model)  # e.g. the schedule freezes γ here
        self.optimizer, self.variable_optimizer = optimizers.build(
            self.cmp, model, self.variables, list(self.slacks.values()), scheme=self.scheme, dual_lr=self.dual_lr,
            freeze_variables=self.formulation.expects_schedule, before_primal_step=self.before_primal_step_,
            primal_optimizer=primal_optimizer, dual_optimizer=dual_optimizer, variable_optimizer=variable_optimizer,
            variable_lr=variable_lr, primal_lr=primal_lr)
        self.penalty_updater = self.formulation.penalty_coefficient_updater()
        self.monitor = self._feasibility_monitor(dual_optimizer is None)
        self._roll = compile_solver_step(self.optimizer, self.check_finite) if self.compile else None

    # ------------------------------------------------------------------ construction helpers
    def _check_settings(self, dual_lr: Any, constrained_optimizer: Any, on_nonfinite: Any, dual_every: Any,
                        check_finite: Any) -> None:
        self.dual_lr = _check_dual_lr(dual_lr)
        self.scheme = _check_choice(constrained_optimizer, "constrained_optimizer", tuple(optimizers.SCHEMES))
        self.on_nonfinite = _check_choice(on_nonfinite, "on_nonfinite", ("raise", "skip"))
        self.dual_every = check_int(dual_every, "dual_every", "Solver")
        self.check_finite = bool(check_finite)

    def _build_constraints(self, example_batch: Any) -> None:
        """Size every constraint (dry run), create the slacks u and Cooper's constraints, and the CMP."""
        device, dtype = self._device_and_dtype()
        sizes, target_sizes = constraint_sizes(self.problem, self.model, self.plans, example_batch, dtype)
        self.constraint_sizes = sizes
        self.slacks: dict[str, torch.nn.Parameter] = {  # keyed by the constraint names (free text)
            p.key: torch.nn.Parameter(torch.full((sizes[p.key],), p.slack_init, device=device, dtype=dtype))
            for p in self.plans
            if p.has_slack and p.mode == "lagrangian"
        }
        cooper_constraints = {
            p.key: self.formulation.build(p, sizes[p.key], device, dtype) for p in self.plans if p.mode == "lagrangian"
        }
        bound = {p.key: p.constraint.target.variables(self.model) for p in self.plans
                 if p.constraint.target.from_variables is not None}
        self.cmp = ProblemCMP(self.problem, self.plans, cooper_constraints, self.slacks, self.check_finite, bound,
                              target_sizes=target_sizes)

    def _feasibility_monitor(self, plain_sgd_dual: bool) -> FeasibilityMonitor:
        plans = [p for p in self.plans if p.mode == "lagrangian"]
        keys = {p.key: p.constraint_type == ConstraintType.EQUALITY for p in plans}
        rate = self.dual_lr / self.dual_every
        expected = {p.key: rate for p in plans} if plain_sgd_dual and self.formulation.expects_multiplier else {}
        return FeasibilityMonitor(keys, expected)

    def _device_and_dtype(self) -> tuple[torch.device, torch.dtype]:
        for parameter in self.model.parameters():
            if parameter.is_floating_point():
                return parameter.device, parameter.dtype
        return torch.device("cpu"), torch.get_default_dtype()

    def _constrained_variables(self) -> list[torch.nn.Parameter]:
        variables: dict[int, torch.nn.Parameter] = {}
        for plan in self.plans:
            target = plan.constraint.target
            if plan.mode != "penalty" and target.variables is not None:
                for variable in target.variables(self.model):
                    variables.setdefault(id(variable), variable)
        return list(variables.values())

    # ------------------------------------------------------------------ the step
    def step(self, batch: Any = None) -> StepRecord:
        """Take one primal–dual step on ``batch`` and return what it measured.

        ``batch`` may be left out when neither the objective nor any target reads one (a problem on
        the parameters alone): the model is then called as ``model(None)``. Without a batch, a step whose
        constraint targets read one (``"batch" in target.reads``) is refused before any work; should the
        objective or the model read it after all, its error carries a note saying the step got no batch.

        Raises:
            TypeError: If ``batch`` is ``None`` and a constraint's target reads the batch.
            NonFiniteError: If the loss, a violation or a gradient is NaN/Inf (``on_nonfinite="raise"``);
                model, multipliers, slacks and optimizer states are left as they were before the step.
        """
        if batch is None and self._batch_readers:
            raise TypeError(f"Solver.step() was called without a batch, but the targets of the constraints "
                            f"{self._batch_readers} read it; pass one: solver.step(batch)")
        self.formulation.before_step(self.variables, self.epoch)  # e.g. the schedule sets γ = c(epoch)
        self.cmp.step_index = self.step_count
        self.cmp.dual_update = self.step_count % self.dual_every == 0
        snapshot = self._dual_snapshot() if self.check_finite else None
        try:
            rollout = (self._roll or self.optimizer.roll)(**optimizers.roll_kwargs(self.optimizer, self.model, batch))
        except (TypeError, AttributeError, IndexError) as err:
            if batch is None:  # failure path only: say why the objective or a target got None
                err.add_note("Solver.step() was called without a batch; pass one if the objective or a target "
                             "reads it")
            raise
        except NonFiniteError:
            self._restore_dual_snapshot(snapshot)
            self.optimizer.zero_grad()
            if self.on_nonfinite == "raise":
                raise
            self.step_count += 1
            return self._skipped_record()
        if self.slacks:  # skip the no_grad context (~2 µs) when there is nothing to clamp
            self.clamp_slack_()
        if self.penalty_updater is not None:  # Cooper's rule reads the violations of this step
            self.penalty_updater.step(rollout.cmp_state.observed_constraints)
        result: StepValues = rollout.cmp_state.misc["values"]
        if self.monitor.keys:  # two in-place adds on the device; read back only by feasibility()
            self.monitor.update(result.logged_violations, {k: m.weight for k, m in self.cmp.named_multipliers()})
        lagrangian = rollout.primal_lagrangian_store.lagrangian
        record = StepRecord(
            step=self.step_count,
            loss=result.objective.detach() if result.objective is not None else rollout.loss.detach(),
            lagrangian=lagrangian.detach() if lagrangian is not None else rollout.loss.detach(),
            values=result.logged,
            violations=result.logged_violations,
            multipliers=self.multipliers(),
            slacks={k: u.detach().clone() for k, u in self.slacks.items()},
        )
        self.step_count += 1
        return record

    def before_primal_step_(self) -> None:
        """Called by the optimizer between backward and the primal step: sync slack grads, check grads."""
        if is_distributed():
            shared = [*self.slacks.values()]
            if not isinstance(self.model, torch.nn.parallel.DistributedDataParallel):
                shared += self.variables
            for parameter in shared:
                if parameter.grad is not None:
                    all_reduce_mean_(parameter.grad)
        if self.check_finite:
            grads = [p.grad for group in self._primal_params() for p in group if p.grad is not None]
            if grads and not bool(torch.isfinite(torch.stack(torch._foreach_norm(grads))).all()):
                lrs = [g["lr"] for opt in self.optimizer.primal_optimizers for g in opt.param_groups]
                raise NonFiniteError(
                    f"step {self.step_count}: a gradient is non-finite (objective {self.problem.objective!r}, "
                    f"constraints {[p.key for p in self.plans]}); nothing was updated. If training diverged, "
                    f"lower the primal learning rates {lrs} or dual_lr={self.dual_lr}"
                )

    def _primal_params(self) -> list[list[torch.Tensor]]:
        return [[p for g in opt.param_groups for p in g["params"]] for opt in self.optimizer.primal_optimizers]

    @torch.no_grad()
    def clamp_slack_(self) -> None:
        """Project every slack on u ≥ 0."""
        for slack in self.slacks.values():
            slack.clamp_(min=0.0)

    def set_epoch(self, epoch: int) -> None:
        """Tell the solver which epoch starts (passed to the formulation's ``before_step``, e.g. the schedule's)."""
        self.epoch = int(epoch)

    def _dual_snapshot(self) -> dict[str, torch.Tensor]:
        return {name: p.detach().clone() for name, p in self._dual_and_slack_parameters()}

    @torch.no_grad()
    def _restore_dual_snapshot(self, snapshot: dict[str, torch.Tensor] | None) -> None:
        if snapshot is None:
            return
        for name, parameter in self._dual_and_slack_parameters():
            parameter.copy_(snapshot[name])

    def _dual_and_slack_parameters(self) -> list[tuple[str, torch.nn.Parameter]]:
        duals = [(f"multiplier.{k}", m.weight) for k, m in self.cmp.named_multipliers()]
        return duals + [(f"slack.{k}", u) for k, u in self.slacks.items()]

    def _skipped_record(self) -> StepRecord:
        nan = torch.full((), float("nan"), device=self._device_and_dtype()[0])
        return StepRecord(self.step_count - 1, nan, nan, {}, {}, self.multipliers(),
                          {k: u.detach().clone() for k, u in self.slacks.items()}, skipped=True)

    # ------------------------------------------------------------------ accessors
    def multipliers(self) -> dict[str, torch.Tensor]:
        """λ per constraint with a multiplier (detached copies)."""
        return {key: m.weight.detach().clone() for key, m in self.cmp.named_multipliers()}

    def feasibility(self) -> dict[str, Verdict]:
        """Per constraint: ``"feasible"``, ``"likely infeasible"`` or ``"undecided"``, with the evidence.

        Judged from the dual dynamics of the steps taken so far (see :mod:`constrained_eq.core.solver.feasibility`):
        an infeasible constraint keeps a violation bounded away from 0 while its multiplier grows
        linearly at the rate η_d · violation. Reading the verdict is one host sync; steps take none for it.

        Examples:
            >>> for name, verdict in solver.feasibility().items():  # doctest: +SKIP
            ...     print(name, verdict.verdict, verdict.evidence)
        """
        return self.monitor.verdicts()

    def penalty_coefficients(self) -> dict[str, torch.Tensor]:
        """The penalty coefficient c per constraint that has one (augmented Lagrangian, penalty), detached."""
        return {key: c.value.detach().clone() for key, c in self.cmp.named_penalty_coefficients()}

    def named_constraints(self):
        """Yield ``(name, constraint)`` of the problem."""
        return self.problem.named_constraints()

    def dual_parameters(self) -> list[torch.nn.Parameter]:
        """The multipliers' parameters."""
        return list(self.cmp.dual_parameters())

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict[str, Any]:
        """Model, multipliers, slacks, every optimizer, step/epoch counters and RNG states.

        The model's weights are those of the bare module (no ``module.`` prefix under DDP), so a checkpoint
        taken on N processes loads on one and back (see :mod:`constrained_eq.core.solver.state`).
        """
        return solver_state_dict(self)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a :meth:`state_dict`; refuses one taken from another problem structure or formulation.

        The structure (:func:`constrained_eq.core.solver.structure.describe`: constraint names, kinds, bounds, sizes,
        the formulation and its options) must match; reprs of callables (the loss function's name) do not
        matter.
        """
        load_solver_state(self, state)

    def __repr__(self) -> str:
        return (f"Solver(problem={self.problem!r}, formulation={self.formulation!r}, "
                f"constrained_optimizer={self.scheme!r}, dual_lr={self.dual_lr})")
