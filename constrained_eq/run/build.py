"""Turn a checked problem file (see :mod:`constrained_eq.run.problem_file`) into objects.

The task and its loaders, the model, the constraints, the primal optimizers (with their groups) and the
``Solver``; :mod:`constrained_eq.run.runner` runs what is built here. Strategies (``strategy:`` in the
file or ``--strategy``) switch only how the one problem is solved; they are
:class:`~constrained_eq.run.strategies.Strategy` records (see :mod:`constrained_eq.run.strategies`).
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from constrained_eq._utils import distributed
from constrained_eq._utils.import_path import ImportPathError, is_import_path
from constrained_eq._utils.loaders import to_device
from constrained_eq.core.formulations import resolve_formulation
from constrained_eq.core.problem import constraints as constraint_kinds
from constrained_eq.core.problem.problem import ConstrainedProblem, Objective
from constrained_eq.core.solver.dual_optimizers import NuPI
from constrained_eq.core.solver.engine import Solver
from constrained_eq.data._safe import UnsafeFileError
from constrained_eq.homotopy import homotopic_layers
from constrained_eq.run.constraint_entries import entry_kind, parse_entry
from constrained_eq.run.imports import build_model, load_optimizer
from constrained_eq.run.optimizer_groups import grouped_optimizers
from constrained_eq.run.problem_model import OptimizerSection, Problem, TrainingSection
from constrained_eq.run.problem_yaml import ProblemFileError
from constrained_eq.run.strategies import formulation_for, get_strategy
from constrained_eq.tasks import Task, get_task, projected
from constrained_eq.training.clipping import GradClipper
from constrained_eq.training.precision import autocast_forward, check_precision
from constrained_eq.training.schedules import LRScheduler, resolve_schedule, split_optimizers
from constrained_eq.training.selection import FEASIBLE

__all__ = ["Built", "build", "build_constraints", "seed_everything", "AugmentedLoader", "fail", "line_of", "as_problem"]


class AugmentedLoader:
    """Wrap a loader so every batch goes through ``augment`` (keeps ``len`` and ``generator``)."""

    def __init__(self, loader: Any, augment: Any) -> None:
        self.loader, self.augment = loader, augment

    @property
    def generator(self) -> torch.Generator | None:
        """The wrapped loader's generator (checkpointed by fit)."""
        return getattr(self.loader, "generator", None)

    @property
    def sampler(self) -> Any:
        """The wrapped loader's sampler (``fit`` calls its ``set_epoch`` under torch.distributed)."""
        return getattr(self.loader, "sampler", None)

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator[Any]:
        return (self.augment(batch) for batch in self.loader)


@dataclass
class Built:
    """Everything a problem file builds."""

    task: Task
    model: torch.nn.Module
    solver: Solver
    train_loader: Any
    val_loader: Any
    test_loader: Any
    formulation: str
    callbacks: list[Any] = field(default_factory=list)  # the file's schedules and clipping, for fit


def as_problem(problem: Problem | Mapping[str, Any]) -> Problem:
    """A :class:`Problem`, from a typed one or from the normalised dict of ``load_problem_file``."""
    return problem if isinstance(problem, Problem) else Problem.from_spec(problem)


def fail(problem: Problem, line: int | str | None, message: str) -> ProblemFileError:
    """The error ``<file>:<line>: <message>`` of a checked problem (for the caller to raise)."""
    return ProblemFileError(problem.source.file, line, message)


def line_of(problem: Problem, key: str) -> int | str | None:
    """The file line of a dotted key (``None`` when the key is not in the file)."""
    return problem.source.lines.get(key)


def _check_select(problem: Problem, task: Task, model: torch.nn.Module) -> None:
    """Refuse an ``evaluation.select`` column that training would never log (before any epoch runs)."""
    evaluation = problem.evaluation
    if evaluation.select in ("auto", FEASIBLE):
        return
    columns = ["train_loss", "val_loss"]
    if type(task).metric is not Task.metric:
        columns.append(f"val_{task.metric_name}")
    columns += [f"val_{name}" for name in task.higher_is_better if f"val_{name}" not in columns]
    if evaluation.equivariance_error:
        columns.append("val_equivariance_error")
    if evaluation.project and any(True for _ in homotopic_layers(model)):
        columns.append("val_projected_loss")
    if evaluation.select not in columns:
        raise fail(problem, line_of(problem, "evaluation.select"),
                   f"Expected 'evaluation.select' to be 'auto', 'feasible' or one of {', '.join(map(repr, columns))} "
                   f"(got {evaluation.select!r})")


def build_constraints(problem: Problem) -> list[constraint_kinds.Constraint]:
    """The file's constraints; CR's fixed-weight ``LieDerivative`` penalty only under ``cr``/``custom``."""
    keeps_lie_penalty = get_strategy(problem.strategy).keeps_lie_penalty
    out = []
    for item, line in zip(problem.constraints, problem.source.constraint_lines, strict=True):
        try:
            built = parse_entry(item)
        except (ValueError, TypeError, SyntaxError) as err:
            raise fail(problem, line, f"bad constraint {item!r}: {err}") from None
        if entry_kind(item) == "LieDerivative" and built.is_penalty and not keeps_lie_penalty:
            continue  # one problem file serves every strategy: CR's penalty is not part of ACE or vanilla
        out.append(built)
    return out


def _model(task: Task, name: str, options: Mapping[str, Any]) -> torch.nn.Module:
    """The task's model ``name``, or the user's ``package.module:factory`` called with ``options``."""
    return build_model(name, options) if is_import_path(name) else task.model(name, **options)


def _optimizer(problem: Problem, section: OptimizerSection, params: Any) -> torch.optim.Optimizer:
    """The primal optimizer ``section`` (the file's, or a group's) describes, on ``params``."""
    kwargs = {"lr": section.lr, "weight_decay": section.weight_decay, **section.options}
    if is_import_path(section.name):
        cls = load_optimizer(section.name, kwargs)
    else:
        cls = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW, "sgd": torch.optim.SGD}[section.name]
    optimizer = cls(params, **kwargs)
    if not isinstance(optimizer, torch.optim.Optimizer):
        raise fail(problem, line_of(problem, "optimizer.name"), f"Expected the optimizer {section.name!r} to "
                                                                f"return a torch.optim.Optimizer (got "
                                                                f"{type(optimizer).__name__})")
    return optimizer


def _named_optimizer(problem: Problem, name: str) -> OptimizerSection:
    """The optimizer section with optimizer ``name``; a group's own optimizer takes none of its ``options``."""
    if name == problem.optimizer.name:
        return problem.optimizer
    return dataclasses.replace(problem.optimizer, name=name, options={})


def _dual_optimizer(problem: Problem) -> Any:
    dual = problem.dual_optimizer
    return NuPI(**dual.options) if dual.name == "nupi" else None


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and torch's generators."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _task_and_model(problem: Problem) -> tuple[Task, Any, torch.nn.Module]:
    """The task, its loaders and the model, with each refusal named by the file's key and line."""
    sections = {"task": problem.task, "model": problem.model}
    section = "task"
    try:
        task = get_task(problem.task.name)(**problem.task.options)
        loaders = task.loaders(problem.training.seed, problem.training.batch_size)
        section = "model"
        model = _model(task, problem.model.name, problem.model.options)
    except UnsafeFileError as err:  # a dataset file that is not plain data: never unpickled
        raise fail(problem, line_of(problem, "task.options.root") or line_of(problem, "task.name"), str(err)) from None
    except FileNotFoundError as err:  # a dataset that is neither cached nor downloadable
        raise fail(problem, line_of(problem, "task.name"),
                   f"the data of task {problem.task.name!r} is missing: {err}") from None
    except ImportPathError as err:
        raise fail(problem, line_of(problem, f"{section}.name"), f"'{section}.name': {err}") from None
    except (ValueError, TypeError) as err:
        named = next((k for k in sections[section].options if f"'{k}'" in str(err)), None)
        where = f"{section}.options.{named}" if named else f"{section}.options"
        line = line_of(problem, where) or line_of(problem, f"{section}.options") or line_of(problem, section)
        raise fail(problem, line, f"Expected '{where}' to be accepted by {section} "
                                  f"{sections[section].name!r}: {err}") from None
    return task, loaders, model


def _forward(problem: Problem, task: Task, device: str | torch.device) -> Any:
    """The task's forward pass, under bf16 autocast when ``training.precision`` is ``bf16``."""
    if problem.training.precision != "bf16":
        return task.forward
    try:
        check_precision("bf16", device)
    except ValueError as err:
        raise fail(problem, line_of(problem, "training.precision"), str(err)) from None
    return autocast_forward(task.forward, device)


def _solver(problem: Problem, constrained: ConstrainedProblem, model: torch.nn.Module, name: str,
            options: Mapping[str, Any], val_loader: Any, device: str | torch.device) -> Solver:
    """The primal optimizers (with their groups) and the ``Solver`` of the formulation ``name``."""
    try:
        primal = grouped_optimizers(problem.optimizer, model, problem.constrained_optimizer,
                                    lambda params: _optimizer(problem, problem.optimizer, params),
                                    lambda name, groups: _optimizer(problem, _named_optimizer(problem, name), groups))
    except ValueError as err:
        raise fail(problem, line_of(problem, "optimizer.groups"), str(err)) from None
    training = problem.training
    try:
        formulation = resolve_formulation(name, **options)  # built once, here; its options go to metrics.json
        return Solver(constrained, model, formulation, primal, problem.dual_lr,
                      constrained_optimizer=problem.constrained_optimizer,
                      variable_optimizer=problem.variable_optimizer, variable_lr=problem.variable_lr,
                      dual_optimizer=_dual_optimizer(problem), on_nonfinite=training.on_nonfinite,
                      compile=training.compile,
                      example_batch=to_device(next(iter(val_loader)), torch.device(device)))
    except ProblemFileError:
        raise
    except (ValueError, TypeError) as err:
        raise fail(problem, None, str(err)) from None


def build(problem: Problem | Mapping[str, Any], device: str | torch.device = "cpu",
          context: distributed.Context | None = None) -> Built:
    """Build task, loaders, model and solver of a checked problem (a :class:`Problem` or its normalised dict).

    Under ``torchrun`` (``context`` from :func:`constrained_eq._utils.distributed.init_from_env`) the train
    loader is sharded across ranks and the model wrapped in DDP once the Solver is built.

    Raises:
        ProblemFileError: If an option is refused by the task, the model or the formulation.
    """
    problem = as_problem(problem)
    training = problem.training
    seed_everything(training.seed)
    task, loaders, model = _task_and_model(problem)
    _check_select(problem, task, model)
    strategy = get_strategy(problem.strategy)
    constraints = build_constraints(problem)
    if strategy.drops_constraints:
        model, constraints = projected(model), []
    model = model.to(device)
    name, options = formulation_for(problem.strategy, problem.formulation, training)
    constrained = ConstrainedProblem(Objective(task.loss, _forward(problem, task, device)), constraints)
    solver = _solver(problem, constrained, model, name, options, loaders.val, device)
    train = loaders.train
    if context is not None:
        try:
            train = distributed.shard_loader(train, context, training.seed)
        except ValueError as err:
            raise fail(problem, line_of(problem, "training.batch_size"), str(err)) from None
        solver.model = distributed.wrap_model(model, context)
    if strategy.augments:
        train = AugmentedLoader(train, task.augment)
    return Built(task, model, solver, train, loaders.val, loaders.test, name, training_callbacks(training, solver))


def training_callbacks(training: TrainingSection, solver: Solver) -> list[Any]:
    """``training.scheduler``, ``training.variable_scheduler`` and ``training.clip_grad_norm`` as fit's callbacks.

    In this order, so that each epoch's row holds ``lr.primal``, ``lr.variables``, then ``grad_norm.primal``.
    """
    primal, variables = split_optimizers(solver)
    callbacks: list[Any] = []
    for spec, name, optimizers in ((training.scheduler, "primal", primal),
                                   (training.variable_scheduler, "variables", [variables] if variables else [])):
        if spec is not None and optimizers:
            factor = resolve_schedule(spec["name"], spec["options"], training.epochs)
            callbacks.append(LRScheduler(optimizers, factor, name))
    if training.clip_grad_norm is not None and primal:
        callbacks.append(GradClipper(primal, training.clip_grad_norm))
    return callbacks
