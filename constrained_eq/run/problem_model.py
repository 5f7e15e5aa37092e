"""The problem file as typed, frozen sections: every key, its default and its meaning, stated once.

:func:`~constrained_eq.run.problem_file.load_problem_file` checks a file key by key (with the checks of
:mod:`~constrained_eq.run.problem_schema`, which takes its defaults from here) and
:func:`~constrained_eq.run.problem_file.load_problem` returns it as a :class:`Problem`: one dataclass per
section, plus a :class:`SourceMap` that says which file and line each key came from (kept apart from the
data, so that the problem's hash never depends on where it was written)::

    problem = load_problem("problems/nbody_quick.yaml")
    problem.training.epochs, problem.optimizer.lr        # 20, 0.001
    problem.source.line_of("training.epochs")            # 31

A field's ``metadata["doc"]`` is its entry in the problem-file reference of docs/running.md, which is
generated from the JSON Schema of these classes (:mod:`~constrained_eq.run.problem_reference`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from constrained_eq.core.solver.engine import DEFAULT_DUAL_LR

__all__ = ["TaskSection", "ModelSection", "FormulationSection", "OptimizerSection", "TrainingSection",
           "EvaluationSection", "LoggingSection", "DualOptimizer", "Problem", "SourceMap", "SECTIONS", "REQUIRED",
           "ABSENT_IS_DEFAULT", "default_of"]

REQUIRED = object()  # a key without a default
# a key left out of the normalised problem when absent: a key added later keeps the hash (and the resume
# check) of existing runs' problems unchanged
ABSENT_IS_DEFAULT = object()


def _key(doc: str, default: Any = REQUIRED, *, absent_is: Any = None) -> Any:
    """A field with its default and its documentation; ``absent_is`` marks an :data:`ABSENT_IS_DEFAULT` key."""
    metadata = {"doc": doc, "default": default if absent_is is None else ABSENT_IS_DEFAULT}
    value = absent_is if absent_is is not None else default
    if value is REQUIRED:
        return field(metadata=metadata)
    if isinstance(value, dict | list):
        return field(default_factory=lambda: type(value)(value), metadata=metadata)
    return field(default=value, metadata=metadata)


def default_of(f: dataclasses.Field) -> Any:
    """The default the problem file's checker applies: a value, :data:`REQUIRED` or :data:`ABSENT_IS_DEFAULT`."""
    return f.metadata["default"]


@dataclass(frozen=True)
class TaskSection:
    """``task``: what is trained (data loaders, loss, metric and models)."""

    name: str = _key("a registered task (`toy_rotation`, `nbody`, `classification`, `qm9`, `modelnet`, `mocap`) "
                     "or your own `package.module:TaskClass` ([your-own-code.md](your-own-code.md))")
    options: dict = _key("the task's options (below); unknown keys are refused", {})


@dataclass(frozen=True)
class ModelSection:
    """``model``: one of the task's models, or a factory of your own."""

    name: str = _key("a model of the task (`toy_rotation`: `vector_net`; `nbody`: `egnn`, `segnn`) or your own "
                     "`package.module:factory` returning an `nn.Module`")
    options: dict = _key("the model's options (below); for your own factory, its keyword arguments", {})


@dataclass(frozen=True)
class FormulationSection:
    """``formulation``: how the constrained problem is solved."""

    name: str = _key("`lagrangian`, `augmented_lagrangian`, `resilient`, `penalty`, `schedule`, `none`; "
                     "`formulation: resilient` is short for `{name: resilient}`", "lagrangian")
    options: dict = _key(
        "the formulation's options: `resilient` `rho`; `augmented_lagrangian` `penalty_coefficient`, "
        "`penalty_updater`; `penalty` `coefficient`, `penalty_updater`; `schedule` `epochs` (default "
        "`training.epochs`), `shape` (`triangle`/`constant`), `value`. `penalty_updater`: `multiplicative` or "
        "`additive` (Cooper's rules), or `{name: multiplicative, growth_factor: 1.01, violation_tolerance: 1.0e-4, "
        "has_restart: true}` / `{name: additive, increment: 1.0, …}`", {})


@dataclass(frozen=True)
class OptimizerSection:
    """``optimizer``: the primal optimizer of the weights θ."""

    name: str = _key("`adam`, `sgd`, `adamw` (primal optimizer on θ), or an import path such as `torch.optim:RAdam` "
                     "or your own `package.module:make_optimizer` (called `(params, lr=…, weight_decay=…, "
                     "**options)`)", "adam")
    lr: float = _key("learning rate of θ", 1e-3)
    weight_decay: float = _key("weight decay of θ", 0.0)
    options: dict = _key("further keyword arguments of the optimizer (`betas`, `momentum`, …); `{fused: true}` runs "
                         "Adam's update as one kernel, 8 % off the N-body EGNN's step on a CPU "
                         "([performance](performance.md))", {})
    groups: list = _key("blocks of θ with their own settings: a list of `{params: '<fnmatch pattern of parameter "
                        "names>', name: <optimizer>, lr: …, weight_decay: …}` (all but `params` optional); a "
                        "parameter goes to the first group that matches, else to the section's settings; a group "
                        "naming another optimizer gets its own (e.g. SGD on the body, Adam on `head.*`)", [])


@dataclass(frozen=True)
class TrainingSection:
    """``training``: the loop's budget, checkpoints, logging, averaging, schedules and precision."""

    epochs: int = _key("epochs of training", 10)
    batch_size: int = _key("training batch size (the global batch under torchrun)", 32)
    seed: int = _key("seeds model init, the global RNGs and the train loader's generator", 0)
    eval_every: int = _key("validate every N epochs (and at the last)", 1)
    checkpoint_every: int = _key("write `checkpoint.pt` every N epochs (and at the last)", 1)
    log_every: int = _key("refresh the progress bar every N steps", 10)
    steps_every: int | None = _key("append to `steps.csv` every N steps (`null`: never)", None)
    on_nonfinite: str = _key("`raise` (stop at a NaN/Inf loss, violation or gradient; the last checkpoint is intact) "
                             "or `skip` (skip such batches; counted as `skipped_steps` in `metrics.json`; 100 in a "
                             "row, or an epoch whose mean loss is not finite, stop the run)", "raise")
    averaging: str = _key("`none`, `uniform` or `ema`: also keep an average of the iterates "
                          "(`torch.optim.swa_utils.AveragedModel`, updated after every step from `average_start`), "
                          "evaluated at every validation as its own selection candidate (`val_avg_*` columns)", "none")
    average_start: int = _key("first epoch whose iterates enter the average", 0)
    ema_decay: float = _key("decay of `averaging: ema`", 0.99)
    scheduler: Any = _key("learning-rate schedule of θ per epoch, η_e = η_0·f(e, E): `cosine` (option `min_factor`), "
                          "`step` (`step_size`, `gamma`), `multistep` (`milestones`, `gamma`), `exponential` "
                          "(`gamma`), or `package.module:fn` with `fn(epoch, epochs, **options)`; written `cosine` or "
                          "`{name: step, options: {step_size: 10, gamma: 0.5}}`", None)
    variable_scheduler: Any = _key("the same for the step size of γ and u (not with `variable_optimizer: primal`)",
                                   None)
    clip_grad_norm: float | None = _key("rescale θ's gradient to at most this norm before each step", None)
    precision: str = _key("`fp32` or `bf16` (training forward passes under bfloat16 autocast where the device has "
                          "it; loss, validation and test in float32)", "fp32")
    compile: bool = _key("`Solver(compile=True)`, the training step compiled with `torch.compile` (forward, loss, "
                         "targets and Lagrangians with their backward; the optimizer steps); same trajectory to "
                         "float rounding, the first steps compile (tens of seconds to minutes on a CPU; needs a C++ "
                         "compiler there). May change on resume (`--allow-change training.compile`). See "
                         "[performance](performance.md)", absent_is=False)


@dataclass(frozen=True)
class EvaluationSection:
    """``evaluation``: what is validated and tested, and which iterate is kept."""

    project: bool = _key("also test the projected model f_{θ,0} (all f_neq removed)", True)
    select: str = _key(
        "`feasible`: the best deployed-model loss among the evaluations whose validation violations are all within "
        "`feasibility_tol`, or, if none is, the least-violating one (said in `metrics.json` `selection`); or a "
        "history column that picks the best epoch (`val_<metric>`), minimised, or maximised for the task's "
        "accuracies (`val_accuracy`, `val_class_accuracy`). `auto` = `feasible` when the problem has constraints "
        "the deployed model must meet (any constraint but penalties and homotopy constraints on γ), else "
        "`val_projected_loss` (the deployed f_{θ,0}) for `ace_equality`, `ace_augmented`, `cr`, `penalty`, "
        "`custom` on a relaxed model, else `val_loss`", "auto")
    equivariance_error: bool = _key("log the task's equivariance error on validation and test", True)
    feasibility_tol: float = _key(
        "a model is feasible when each counted constraint's largest element violation over the split — \\|h\\| "
        "for an equality, [g − b]₊ for an inequality, [\\|h\\| − u]₊ with a slack — is at most this, in the "
        "target's units", 1e-3)


@dataclass(frozen=True)
class LoggingSection:
    """``logging``: where else the run is logged."""

    tensorboard: bool = _key("also write TensorBoard event files to `<run folder>/tensorboard/` (the `tensorboard` "
                             "extra)", False)


@dataclass(frozen=True)
class DualOptimizer:
    """``dual_optimizer``: how the multipliers λ ascend."""

    name: str = _key("`sgd` (plain ascent, ACE Alg. 1) or `nupi` (Cooper's nuPI, damped); `dual_optimizer: nupi` "
                     "is short for `{name: nupi}`", "sgd")
    options: dict = _key("nuPI's `{kappa_p, kappa_i, ema_nu}`; without `kappa_p` nuPI takes the critical damping "
                         "2√(κ_i/(η_p η_d)) (needs `variable_optimizer: sgd`) — docs/results/nbody.md", {})


SECTIONS: dict[str, type] = {"task": TaskSection, "model": ModelSection, "formulation": FormulationSection,
                             "optimizer": OptimizerSection, "training": TrainingSection,
                             "evaluation": EvaluationSection, "logging": LoggingSection}


@dataclass(frozen=True)
class SourceMap:
    """Where a problem was written: its file, the line of every key, the line of every constraint."""

    file: str
    lines: Mapping[str, int] = field(default_factory=dict)
    constraint_lines: tuple[Any, ...] = ()

    def line_of(self, key: str) -> int | None:
        """The line of a dotted key (``"training.epochs"``), of its section, or ``None``."""
        while key:
            if key in self.lines:
                return self.lines[key]
            key = key.rpartition(".")[0]
        return None


@dataclass(frozen=True)
class Problem:
    """A checked problem file: its sections, top-level keys and constraints, and where it was written."""

    task: TaskSection
    model: ModelSection
    constraints: tuple[Any, ...] = _key(
        "list of constraint reprs (`Equality(target=gammas)`, `Equality(target=gammas, value=0.5)`, "
        "`Resilient(target=gammas, rho=1.0)`, `Inequality(target=gammas, bound=0.1)`, `Inequality(target=gammas, "
        "lower=-0.1, bound=[0.1, 0.2])`, `Penalty(target=gammas, weight=0.01)`, `LieDerivative(weight=0.01)`, "
        "`LieDerivative(weight=0.01, every=4)`: a penalty evaluated every 4 steps with weight ×4) or mappings "
        "`{kind: Resilient, target: gammas, rho: 1.0}`; right-hand sides of any sign, one number or one per entry; "
        "`name=` free text; default `[\"Equality(target=gammas)\"]`", ())
    strategy: str = _key("a paper's recipe by name, which sets the formulation and what it drops (below); "
                         "`custom` runs the file as written", "custom")
    formulation: FormulationSection = field(default_factory=FormulationSection)
    optimizer: OptimizerSection = field(default_factory=OptimizerSection)
    dual_lr: float = _key("η_d, the step size of the multipliers λ (the `Solver`'s default too)", DEFAULT_DUAL_LR)
    dual_optimizer: DualOptimizer = field(default_factory=DualOptimizer)
    variable_optimizer: str = _key("`sgd` (plain steps on γ and u, as ACE) or `primal` (γ in the primal optimizer)",
                                   "sgd")
    variable_lr: float | None = _key("`null` (the primal lr) or the step size of γ and u", None)
    constrained_optimizer: str = _key("Cooper's scheme (`extrapolation`: the optimizers become ExtraSGD/ExtraAdam; "
                                      "`adamw` has none)", "simultaneous")
    training: TrainingSection = field(default_factory=TrainingSection)
    evaluation: EvaluationSection = field(default_factory=EvaluationSection)
    logging: LoggingSection = field(default_factory=LoggingSection)
    source: SourceMap = field(default_factory=lambda: SourceMap(""), compare=False)
    # the keys written although their default leaves them out (``training.compile``), so to_spec keeps them
    given: frozenset[str] = field(default=frozenset(), compare=False, repr=False)

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any]) -> Problem:
        """The typed problem of a normalised problem dict (what ``load_problem_file`` returns)."""
        sections = {name: kind(**spec[name]) for name, kind in SECTIONS.items()}
        top = {f.name: spec[f.name] for f in dataclasses.fields(cls)
               if f.name not in SECTIONS and f.name not in ("dual_optimizer", "constraints", "source", "given")}
        source = SourceMap(spec.get("file", ""), dict(spec.get("lines", {})), tuple(spec.get("constraint_lines", ())))
        given = frozenset(f"{name}.{f.name}" for name, kind in SECTIONS.items() for f in dataclasses.fields(kind)
                          if default_of(f) is ABSENT_IS_DEFAULT and f.name in spec[name])
        return cls(**sections, **top, dual_optimizer=DualOptimizer(**spec["dual_optimizer"]),
                   constraints=tuple(spec["constraints"]), source=source, given=given)

    def to_spec(self) -> dict[str, Any]:
        """The normalised problem dict again: ``Problem.from_spec(spec).to_spec() == spec``."""
        spec: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name in ("source", "given"):
                continue
            if dataclasses.is_dataclass(value):
                value = {g.name: getattr(value, g.name) for g in dataclasses.fields(value)
                         if default_of(g) is not ABSENT_IS_DEFAULT or f"{f.name}.{g.name}" in self.given}
            spec[f.name] = list(value) if f.name == "constraints" else value
        spec["constraint_lines"] = list(self.source.constraint_lines)
        spec["lines"] = dict(self.source.lines)
        spec["file"] = self.source.file
        return spec
