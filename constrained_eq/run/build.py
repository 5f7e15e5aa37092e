"""Turn a checked problem file (see :mod:`constrained_eq.run.problem_file`) into objects and run it.

Strategies (``strategy:`` in the file or ``--strategy``) switch only how the one problem is solved; they
are :class:`~constrained_eq.core.strategies.Strategy` records (see :mod:`constrained_eq.core.strategies`
for the table), read here and by the problem-file checker alike.
"""

from __future__ import annotations

import ast
import contextlib
import json
import random
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from constrained_eq.core import constraints as constraint_kinds
from constrained_eq.core import distributed
from constrained_eq.core._optim import grouped_optimizers
from constrained_eq.core.dual_optimizers import NuPI
from constrained_eq.core.engine import Solver
from constrained_eq.core.formulations import resolve_formulation
from constrained_eq.core.problem import ConstrainedProblem, Objective
from constrained_eq.core.split_feasibility import counted, measure
from constrained_eq.core.strategies import formulation_for, get_strategy
from constrained_eq.data._safe import UnsafeFileError
from constrained_eq.homotopy import homotopic_layers
from constrained_eq.homotopy.recording import contribution_hooks
from constrained_eq.run.imports import ImportPathError, build_model, is_import_path, load_optimizer
from constrained_eq.run.problem_file import LOCATION_KEYS, ProblemFileError, optimizer_kwargs, problem_hash
from constrained_eq.run.runs import (
    LOCK,
    MARKER,
    RunLock,
    clear_run_folder,
    is_run_folder,
    load_checkpoint,
    mark_run_folder,
    read_json,
    write_json,
)
from constrained_eq.run.selection import FEASIBLE
from constrained_eq.run.tracking import TensorBoardLog, require_tensorboard
from constrained_eq.run.train import fit, to_device
from constrained_eq.run.training_options import TrainingOptions, autocast_forward, check_precision, split_optimizers
from constrained_eq.tasks import Task, get_task, projected

__all__ = ["Built", "build", "run_problem", "evaluate_split", "AugmentedLoader"]


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

    spec: dict[str, Any]
    task: Task
    model: torch.nn.Module
    solver: Solver
    train_loader: Any
    val_loader: Any
    test_loader: Any
    formulation: str
    options: TrainingOptions | None = None


def _fail(spec: Mapping[str, Any], line: int | None, message: str) -> ProblemFileError:
    return ProblemFileError(spec["file"], line, message)


# keys that may change on resume with --allow-change: how the run goes on, not what the problem is
ALLOWED_CHANGES = ("training.epochs", "training.on_nonfinite", "training.log_every", "training.eval_every",
                   "training.checkpoint_every", "training.steps_every", "optimizer.lr", "optimizer.weight_decay",
                   "dual_lr", "variable_lr")


def _line(spec: Mapping[str, Any], key: str) -> int | None:
    """The file line of a dotted key (``None`` when the key is not in the file)."""
    return spec.get("lines", {}).get(key)


def _check_select(spec: Mapping[str, Any], task: Task, model: torch.nn.Module) -> None:
    """Refuse an ``evaluation.select`` column that training would never log (before any epoch runs)."""
    evaluation = spec["evaluation"]
    if evaluation["select"] in ("auto", FEASIBLE):
        return
    columns = ["train_loss", "val_loss"]
    if type(task).metric is not Task.metric:
        columns.append(f"val_{task.metric_name}")
    columns += [f"val_{name}" for name in task.higher_is_better if f"val_{name}" not in columns]
    if evaluation["equivariance_error"]:
        columns.append("val_equivariance_error")
    if evaluation["project"] and any(True for _ in homotopic_layers(model)):
        columns.append("val_projected_loss")
    if evaluation["select"] not in columns:
        raise _fail(spec, _line(spec, "evaluation.select"),
                    f"Expected 'evaluation.select' to be 'auto', 'feasible' or one of {', '.join(map(repr, columns))} "
                    f"(got {evaluation['select']!r})")


def _lie_derivative(item: Any, spec: Mapping[str, Any], line: int | None) -> Any:
    """Build a ``LieDerivative`` entry; its fixed-weight penalty form is CR's, used by ``cr``/``custom`` only."""
    from constrained_eq.homotopy import LieDerivative

    if isinstance(item, dict):
        kwargs = {k: v for k, v in item.items() if k != "kind"}
    else:
        call = ast.parse(item.strip(), mode="eval").body
        if not isinstance(call, ast.Call) or call.args:
            raise _fail(spec, line, f"Expected {item!r} to be written LieDerivative(name=value, ...)")
        kwargs = {kw.arg: kw.value.id if isinstance(kw.value, ast.Name) else ast.literal_eval(kw.value)
                  for kw in call.keywords}
    built = LieDerivative(**kwargs)
    if built.is_penalty and not get_strategy(spec["strategy"]).keeps_lie_penalty:
        return None  # one problem file serves every strategy: CR's penalty is not part of ACE or vanilla
    return built


def build_constraints(spec: Mapping[str, Any]) -> list[constraint_kinds.Constraint]:
    """The file's constraints (``LieDerivative`` only if the installation provides it)."""
    out = []
    for item, line in zip(spec["constraints"], spec["constraint_lines"], strict=True):
        try:
            kind = item["kind"] if isinstance(item, dict) else item.split("(", 1)[0].strip()
            if kind == "LieDerivative":
                built = _lie_derivative(item, spec, line)
            elif isinstance(item, dict):
                built = getattr(constraint_kinds, kind)(**{k: v for k, v in item.items() if k != "kind"})
            else:
                built = constraint_kinds.parse(item)
        except (ValueError, TypeError, SyntaxError) as err:
            raise _fail(spec, line, f"bad constraint {item!r}: {err}") from None
        if built is not None:
            out.append(built)
    return out


def _model(task: Task, name: str, options: Mapping[str, Any]) -> torch.nn.Module:
    """The task's model ``name``, or the user's ``package.module:factory`` called with ``options``."""
    return build_model(name, options) if is_import_path(name) else task.model(name, **options)


def _optimizer(spec: Mapping[str, Any], params: Any) -> torch.optim.Optimizer:
    opt = spec["optimizer"]
    if is_import_path(opt["name"]):
        cls = load_optimizer(opt["name"], optimizer_kwargs(opt))
    else:
        cls = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW, "sgd": torch.optim.SGD}[opt["name"]]
    optimizer = cls(params, **optimizer_kwargs(opt))
    if not isinstance(optimizer, torch.optim.Optimizer):
        raise _fail(spec, _line(spec, "optimizer.name"), f"Expected the optimizer {opt['name']!r} to return a "
                                                         f"torch.optim.Optimizer (got {type(optimizer).__name__})")
    return optimizer


def _named_optimizer(spec: Mapping[str, Any], name: str) -> dict[str, Any]:
    """``spec`` with optimizer ``name`` (a group's own optimizer takes none of the section's ``options``)."""
    section = dict(spec["optimizer"], name=name)
    if name != spec["optimizer"]["name"]:
        section.pop("options", None)
    return {**spec, "optimizer": section}


def _dual_optimizer(spec: Mapping[str, Any]) -> Any:
    dual = spec.get("dual_optimizer", {"name": "sgd"})
    return NuPI(**dual.get("options", {})) if dual["name"] == "nupi" else None


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and torch's generators."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def build(spec: Mapping[str, Any], device: str | torch.device = "cpu",
          context: distributed.Context | None = None) -> Built:
    """Build task, loaders, model and solver of a checked problem.

    Under ``torchrun`` (``context`` from :func:`constrained_eq.core.distributed.init_from_env`) the train
    loader is sharded across ranks and the model wrapped in DDP once the Solver is built.

    Raises:
        ProblemFileError: If an option is refused by the task, the model or the formulation.
    """
    training = spec["training"]
    seed_everything(training["seed"])
    section = "task"
    try:
        task = get_task(spec["task"]["name"])(**spec["task"]["options"])
        loaders = task.loaders(training["seed"], training["batch_size"])
        section = "model"
        model = _model(task, spec["model"]["name"], spec["model"]["options"])
    except UnsafeFileError as err:  # a dataset file that is not plain data: never unpickled
        raise _fail(spec, _line(spec, "task.options.root") or _line(spec, "task.name"), str(err)) from None
    except FileNotFoundError as err:  # a dataset that is neither cached nor downloadable
        raise _fail(spec, _line(spec, "task.name"), f"the data of task {spec['task']['name']!r} is missing: {err}") \
            from None
    except ImportPathError as err:
        raise _fail(spec, _line(spec, f"{section}.name"), f"'{section}.name': {err}") from None
    except (ValueError, TypeError) as err:
        named = next((k for k in spec[section]["options"] if f"'{k}'" in str(err)), None)
        where = f"{section}.options.{named}" if named else f"{section}.options"
        line = _line(spec, where) or _line(spec, f"{section}.options") or _line(spec, section)
        raise _fail(spec, line, f"Expected '{where}' to be accepted by {section} "
                                f"{spec[section]['name']!r}: {err}") from None
    _check_select(spec, task, model)
    strategy = get_strategy(spec["strategy"])
    constraints = build_constraints(spec)
    if strategy.drops_constraints:
        model, constraints = projected(model), []
    model = model.to(device)
    name, options = formulation_for(spec["strategy"], spec["formulation"], training)
    forward = task.forward
    if training.get("precision", "fp32") == "bf16":
        try:
            check_precision("bf16", device)
        except ValueError as err:
            raise _fail(spec, _line(spec, "training.precision"), str(err)) from None
        forward = autocast_forward(task.forward, device)
    problem = ConstrainedProblem(Objective(task.loss, forward), constraints)
    try:
        primal = grouped_optimizers(spec["optimizer"], model, spec.get("constrained_optimizer"),
                                    lambda params: _optimizer(spec, params),
                                    lambda name, groups: _optimizer(_named_optimizer(spec, name), groups))
    except ValueError as err:
        raise _fail(spec, _line(spec, "optimizer.groups"), str(err)) from None
    try:
        formulation = resolve_formulation(name, **options)  # built once, here; its options go to metrics.json
        solver = Solver(problem, model, formulation, primal, spec["dual_lr"],
                        constrained_optimizer=spec.get("constrained_optimizer", "simultaneous"),
                        variable_optimizer=spec["variable_optimizer"], variable_lr=spec["variable_lr"],
                        dual_optimizer=_dual_optimizer(spec),
                        on_nonfinite=training.get("on_nonfinite", "raise"),
                        example_batch=to_device(next(iter(loaders.val)), torch.device(device)))
    except ProblemFileError:
        raise
    except (ValueError, TypeError) as err:
        raise _fail(spec, None, str(err)) from None
    train = loaders.train
    if context is not None:
        try:
            train = distributed.shard_loader(train, context, training["seed"])
        except ValueError as err:
            raise _fail(spec, _line(spec, "training.batch_size"), str(err)) from None
        solver.model = distributed.wrap_model(model, context)
    if strategy.augments:
        train = AugmentedLoader(train, task.augment)
    return Built(dict(spec), task, model, solver, train, loaders.val, loaders.test, name,
                 TrainingOptions(training, *split_optimizers(solver)))


@torch.no_grad()
def evaluate_split(task: Task, model: torch.nn.Module, loader: Any, equivariance: bool = True,
                   contributions: bool = False) -> dict[str, float]:
    r"""Mean loss (and the task's metric when it differs) over ``loader``, plus the equivariance error.

    With ``contributions=True`` and a relaxed model, also ``branch.contribution.<i>``: the per-layer
    :math:`|\gamma_i|\,\mathbb{E}\|f_{neq,i}(z_{i-1})\|` over the loader, read by hooks during the same
    forward passes (logged as ``val_branch.contribution.<i>``; the symmetry report's ``|γ f_neq|``).
    """
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    with contextlib.ExitStack() as stack:
        read = (stack.enter_context(contribution_hooks(model))
                if contributions and any(True for _ in homotopic_layers(model)) else None)
        out = _loader_means(task, model, loader, device)
        if read is not None:
            out.update({f"branch.contribution.{i}": float(c) for i, c in enumerate(read().tolist())})
    error = task.equivariance_error(model, loader) if equivariance else None
    if error is not None:
        out["equivariance_error"] = error
    model.train(was_training)
    return out


def _loader_means(task: Task, model: torch.nn.Module, loader: Any, device: torch.device) -> dict[str, float]:
    """Batch-size-weighted means of the loss and the task's metric, plus the task's loader-wide metrics.

    The sums stay on the device; they are read once, at the end.
    """
    sums: dict[str, Any] = {}
    count = 0
    custom_metric = type(task).metric is not Task.metric
    summaries = []
    for batch in loader:
        batch = to_device(batch, device)
        n = batch.num_graphs if hasattr(batch, "num_graphs") else batch[0].shape[0]
        output = task.forward(model, batch)
        sums["loss"] = sums.get("loss", 0.0) + task.loss(output, batch).detach() * n
        if custom_metric:
            sums[task.metric_name] = sums.get(task.metric_name, 0.0) + task.metric(output, batch).detach() * n
        summary = task.batch_summary(output, batch)
        if summary is not None:
            summaries.append(summary)
        count += n
    return {**{k: float(v) / max(count, 1) for k, v in sums.items()}, **task.aggregate(summaries)}


def _differences(old: Any, new: Any, prefix: str = "") -> list[str]:
    if isinstance(old, dict) and isinstance(new, dict):
        return [d for k in sorted(set(old) | set(new), key=str)
                for d in _differences(old.get(k), new.get(k), f"{prefix}.{k}" if prefix else str(k))]
    return [] if old == new else [f"{prefix}: {old!r} -> {new!r}"]


def _check_run_dir(spec: Mapping[str, Any], run_dir: Path, resume: bool, overwrite: bool,
                   allow_change: tuple[str, ...] = ()) -> list[str]:
    """Refuse a run folder that cannot be used as asked, writing nothing; returns the allowed changes.

    A folder that exists, is not empty and lacks the run marker is never written to (nor deleted);
    ``--overwrite`` deletes only a run folder, and never one another process holds (its lock).
    """
    if run_dir.exists() and not run_dir.is_dir():
        raise _fail(spec, None, f"{run_dir} is a file, not a run folder; choose another --out")
    RunLock.check_free(run_dir)
    contents = [p.name for p in run_dir.iterdir() if p.name != LOCK] if run_dir.is_dir() else []
    has_run = any(name in contents for name in ("checkpoint.pt", "checkpoint.prev.pt", "problem.json"))
    if contents and not has_run and not is_run_folder(run_dir):
        raise _fail(spec, None, f"{run_dir} exists and is not a run folder of constrained_eq (no {MARKER} marker); "
                                "refusing to write into it: choose another --out")
    if resume:
        if not any((run_dir / name).exists() for name in ("checkpoint.pt", "checkpoint.prev.pt")):
            raise _fail(spec, None, f"cannot resume: {run_dir} holds no checkpoint.pt; run without --resume first "
                                    "(with --overwrite if the folder exists)")
        stored = read_json(run_dir / "problem.json")
        if stored.get("sha256") != problem_hash(spec):
            changes = _differences(stored.get("problem", {}), {k: v for k, v in spec.items()
                                                               if k not in LOCATION_KEYS})
            refused = [c for c in changes if c.split(":", 1)[0] not in allow_change]
            if refused or not changes:
                hint = (f"; these can be changed with --allow-change: {', '.join(ALLOWED_CHANGES)}"
                        if refused and all(c.split(':', 1)[0] in ALLOWED_CHANGES for c in refused) else "")
                raise _fail(spec, None, f"refusing to resume {run_dir}: the problem changed since the run started "
                                        f"({'; '.join(refused[:5]) or 'content differs'}); restore the file or start "
                                        f"a new run with another --out{hint}")
            return changes
        return []
    if has_run and not overwrite:
        raise _fail(spec, None, f"{run_dir} already holds a run; pass --resume to continue it, --overwrite to "
                                "start it again, or choose another --out")
    if has_run and not is_run_folder(run_dir):
        raise _fail(spec, None, f"{run_dir}: refusing to delete it: it is not a run folder of constrained_eq (no "
                                f"{MARKER} marker in it); choose another --out, or move it away yourself")
    return []


def _keep_file_hyperparameters(solver: Solver) -> None:
    """After a resume, keep the learning rates and weight decays of the file, not those of the checkpoint.

    ``load_state_dict`` of a torch optimizer restores its param groups' hyperparameters; a resume
    with ``--allow-change optimizer.lr`` (or ``dual_lr``, ...) sets them back to the file's values.
    """
    optimizers = [*solver.optimizer.primal_optimizers, *getattr(solver.optimizer, "dual_optimizers", [])]
    fresh = [[{k: g[k] for k in ("lr", "weight_decay") if k in g} for g in opt.param_groups] for opt in optimizers]
    load = solver.load_state_dict

    def load_then_keep(state: dict[str, Any]) -> None:
        load(state)
        for opt, groups in zip(optimizers, fresh, strict=True):
            for group, values in zip(opt.param_groups, groups, strict=True):
                group.update(values)

    solver.load_state_dict = load_then_keep  # type: ignore[method-assign]


def _open_run_dir(spec: Mapping[str, Any], run_dir: Path, resume: bool, overwrite: bool,
                  allow_change: tuple[str, ...] = ()) -> RunLock:
    """Lock the run folder, check it again under the lock, clear it (``--overwrite``), write marker and problem.json."""
    lock = RunLock(run_dir).acquire()
    try:
        changes = _check_run_dir(spec, run_dir, resume, overwrite, allow_change)
        problem = {k: v for k, v in spec.items() if k not in LOCATION_KEYS}
        if resume:
            if changes:  # the run records every change it was resumed with
                stored = read_json(run_dir / "problem.json")
                history = [*stored.get("changes", []), {"changes": changes}]
                write_json(run_dir / "problem.json", {"sha256": problem_hash(spec), "problem": problem,
                                                      "changes": history})
            return lock
        if overwrite and is_run_folder(run_dir):
            clear_run_folder(run_dir)
        mark_run_folder(run_dir)
        write_json(run_dir / "problem.json", {"sha256": problem_hash(spec), "problem": problem})
    except BaseException:
        lock.release()
        raise
    return lock


def _selection(spec: Mapping[str, Any], relaxed: bool, solver: Solver | None = None) -> str:
    """The validation column that picks the best epoch, or ``"feasible"``.

    ``select: auto`` is ``feasible`` when the problem has constraints a deployed model must meet (any
    enforced constraint that is not a penalty or a homotopy constraint on γ, see
    :mod:`constrained_eq.core.split_feasibility`); otherwise the projected model's loss for strategies that deploy
    f_{θ,0} (ACE equality, CR) and the model's own loss otherwise (ACE resilient deploys f_eq + f_neq).
    """
    select = spec["evaluation"]["select"]
    if select == "auto" and solver is not None and counted(solver.plans):
        return FEASIBLE
    if select != "auto":
        return select
    return _objective_column(spec, relaxed)


def _objective_column(spec: Mapping[str, Any], relaxed: bool) -> str:
    """The loss of the deployed model: ``val_projected_loss`` for strategies that deploy f_{θ,0}, else ``val_loss``."""
    deploys_projection = relaxed and get_strategy(spec["strategy"]).deploys_projection
    return "val_projected_loss" if deploys_projection else "val_loss"


def _check_world_size(spec: Mapping[str, Any], context: distributed.Context | None) -> None:
    batch_size = spec["training"]["batch_size"]
    if context is not None and batch_size % context.world_size:
        raise _fail(spec, _line(spec, "training.batch_size"),
                    f"Expected 'training.batch_size' ({batch_size}) to be a multiple of the number of processes "
                    f"({context.world_size}): it is the global batch, split evenly across ranks")


def _rank_agreement(built: Built, context: distributed.Context | None) -> dict[str, Any] | None:
    """World size and the largest difference between ranks of γ, λ, u and the weights' fingerprints (a collective).

    γ, λ and u are compared entry by entry; the weights θ through per-tensor (Σθ, Σθ²), so that a large
    model is not gathered whole.
    """
    if context is None:
        return None
    solver = built.solver
    tensors = [distributed.fingerprint(list(built.model.parameters())), *solver.variables,
               *solver.multipliers().values(), *solver.slacks.values()]
    return {"world_size": context.world_size, "backend": context.backend,
            "max_rank_difference": distributed.max_rank_difference(tensors)}


def _selection_mode(spec: Mapping[str, Any], relaxed: bool, task: Task) -> str:
    """``"max"`` when the selected column is a metric the task wants large (an accuracy), else ``"min"``."""
    column = _selection(spec, relaxed)
    column = _objective_column(spec, relaxed) if column == FEASIBLE else column
    return "max" if column.removeprefix("val_") in task.higher_is_better else "min"


def run_problem(spec: Mapping[str, Any], run_dir: str | Path, *, resume: bool = False, overwrite: bool = False,
                device: str = "cpu", progress: bool = True, context: distributed.Context | None = None,
                allow_change: tuple[str, ...] = ()) -> dict[str, Any]:
    """Build and train a problem into ``run_dir``, then test the best model, projected and not.

    Under ``torchrun`` pass the ``context`` of :func:`constrained_eq.core.distributed.init_from_env`: every
    rank trains its share of each global batch, rank 0 alone writes the run folder and tests, and
    ``metrics.json`` records ``distributed.max_rank_difference`` (0.0 when all ranks hold the same
    θ, γ, λ and u, as they should).

    Nothing is written before the build succeeds; then the run folder is locked (a second writer is
    refused naming the holder's pid), marked as a run folder and, with ``overwrite``, cleared (only a
    folder carrying the marker). ``allow_change`` lists the dotted keys (among :data:`ALLOWED_CHANGES`)
    that may differ from the stored problem on ``resume``; each such resume is recorded in problem.json.

    Returns:
        dict: The run's ``metrics.json`` content (best/final validation metrics, ``test``,
        ``test_projected``, ``seconds``, ``strategy``, ``formulation``); on ranks other than 0, an empty dict.
    """
    run_dir = Path(run_dir)
    _check_world_size(spec, context)
    tensorboard = _check_tensorboard(spec)
    changes = distributed.on_main(lambda: _check_run_dir(spec, run_dir, resume, overwrite, allow_change))
    began = time.perf_counter()
    built = build(spec, device, context)
    if changes:
        _keep_file_hyperparameters(built.solver)
    held: list[RunLock] = []  # rank 0's lock on the run folder, taken once the build succeeded
    distributed.on_main(lambda: held.append(_open_run_dir(spec, run_dir, resume, overwrite, allow_change)))
    log = TensorBoardLog(run_dir, built.model) if tensorboard and distributed.is_main_process() else None

    def end_epoch(epoch: int, row: dict[str, Any]) -> None:
        built.options.end_epoch(epoch, row)  # records this epoch's rates, sets the next epoch's
        if log is not None:
            log.epoch(epoch, row)
    training, evaluation = spec["training"], spec["evaluation"]

    relaxed = evaluation["project"] and any(True for _ in homotopic_layers(built.model))

    def evaluate(model: torch.nn.Module, loader: Any, contributions: bool = True) -> dict[str, float]:
        metrics = evaluate_split(built.task, model, loader, equivariance=evaluation["equivariance_error"],
                                 contributions=contributions)
        if relaxed:  # the deployed f_{θ,0}: both papers select the projected model by validation
            metrics["projected_loss"] = evaluate_split(built.task, projected(model), loader, equivariance=False)["loss"]
        return metrics

    fit(built.solver, built.train_loader, built.val_loader, epochs=training["epochs"], run_dir=run_dir,
        evaluate=evaluate, checkpoint_every=training["checkpoint_every"], eval_every=training["eval_every"],
        log_every=training["log_every"], steps_every=training["steps_every"], resume=resume, progress=progress,
        select=_selection(spec, relaxed, built.solver), select_mode=_selection_mode(spec, relaxed, built.task),
        objective=_objective_column(spec, relaxed), feasibility_tol=evaluation["feasibility_tol"],
        averaging=training["averaging"], average_start=training["average_start"], ema_decay=training["ema_decay"],
        on_epoch=end_epoch)
    agreement = _rank_agreement(built, context)
    if not distributed.is_main_process():
        return {}
    if (run_dir / "best.pt").exists():
        best = load_checkpoint(run_dir / "best.pt", map_location=device)
        built.model.load_state_dict(best["model"])
    summary = read_json(run_dir / "metrics.json")
    summary["test"] = evaluate(built.model, built.test_loader, contributions=False)
    built.model.eval()
    summary["measured_constraints"]["test"] = measure(built.solver, built.model, built.test_loader,
                                             tolerance=evaluation["feasibility_tol"]).verdict()
    if relaxed:
        summary["test_projected"] = evaluate(projected(built.model), built.test_loader, contributions=False)
    else:
        summary["test_projected"] = summary["test"]
    summary.update(strategy=spec["strategy"], formulation=built.formulation,
                   formulation_options=built.solver.formulation.options(), file=spec["file"],
                   metric=built.task.metric_name if type(built.task).metric is not Task.metric else "loss",
                   wall_seconds=time.perf_counter() - began)
    if agreement is not None:
        summary["distributed"] = agreement
    write_json(run_dir / "metrics.json", summary)
    write_constraint_report(run_dir)
    write_symmetry_report(run_dir)
    if log is not None:
        log.close(spec, summary)
    for lock in held:
        lock.release()
    return summary


def write_constraint_report(run_dir: str | Path) -> str | None:
    """Write ``constraint_report.txt`` (every constraint by name, its violations and verdicts) if there are any."""
    from constrained_eq.run.report import constraint_report

    run_dir = Path(run_dir)
    if not read_json(run_dir / "metrics.json").get("structure", {}).get("constraints"):
        return None
    text = constraint_report(run_dir)
    (run_dir / "constraint_report.txt").write_text(text + "\n", encoding="utf-8")
    return text


def _check_tensorboard(spec: Mapping[str, Any]) -> bool:
    """Whether the run logs to TensorBoard; refuses ``logging.tensorboard: true`` without the package."""
    if not spec.get("logging", {}).get("tensorboard", False):
        return False
    try:
        require_tensorboard()
    except ImportError as err:
        raise _fail(spec, _line(spec, "logging.tensorboard"), str(err)) from None
    return True


def write_symmetry_report(run_dir: str | Path) -> Any:
    """Write ``symmetry_report.json``/``.txt`` (per-layer γ, λ, u, signatures) if the run has homotopy constraints.

    ρ is the run's own (``metrics.json``), so a resilient run with ``rho: 0.5`` is reported and KKT-checked at 0.5.
    """
    from constrained_eq.run.report import symmetry_report

    run_dir = Path(run_dir)
    try:
        report = symmetry_report(run_dir)
    except ValueError:  # a run without per-layer γ (vanilla): nothing to report
        return None
    write_json(run_dir / "symmetry_report.json", json.loads(report.to_json()))
    (run_dir / "symmetry_report.txt").write_text(str(report) + "\n", encoding="utf-8")
    return report
