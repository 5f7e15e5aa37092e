"""Problem files (YAML): load with line numbers, check every key and value, fill in the defaults.

:func:`load_problem_file` returns the normalised problem as plain data (every key present, defaults
filled in); a mistake raises :class:`ProblemFileError` naming the file, the line and the allowed
values. The keys, their checks and defaults are :mod:`constrained_eq.run.problem_schema`'s, the bounded
YAML reading :mod:`constrained_eq.run.problem_yaml`'s and the ``constraints:`` entries
:mod:`constrained_eq.run.constraint_entries`'. Nothing is built here: :mod:`constrained_eq.run.build`
turns the checked problem into objects. See ``docs/running.md`` for the reference of every key.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from constrained_eq._utils.import_path import ImportPathError, is_import_path
from constrained_eq.run.constraint_entries import CONSTRAINT_KINDS, entry_kind, parse_entry
from constrained_eq.run.imports import load_model_factory, load_optimizer
from constrained_eq.run.overrides import apply_overrides, as_overrides
from constrained_eq.run.problem_model import REQUIRED, FormulationSection, Problem, TrainingSection
from constrained_eq.run.problem_schema import (
    DEFAULT_CONSTRAINTS,
    GROUP_SCHEMA,
    MAPPING,
    OPTIMIZERS,
    SCHEMA,
    TOP,
    Checker,
    check_options,
    choice,
)
from constrained_eq.run.problem_yaml import (
    check_plain,
    plain,
    read_yaml,
)
from constrained_eq.run.strategies import formulation_for, get_strategy

__all__ = ["load_problem_file", "load_problem", "problem_hash", "LOCATION_KEYS", "optimizer_kwargs"]

# keys of the loaded problem that say where things are, not what the problem is (left out of the hash)
LOCATION_KEYS = ("file", "constraint_lines", "lines")


def _check_names(checker: Checker, raw: Mapping, spec: dict) -> None:
    from constrained_eq.core.formulations import FORMULATIONS
    from constrained_eq.tasks import get_task, task_names

    def line_of(section: str, key: str) -> int | None:
        sec = raw.get(section)
        return getattr(sec, "key_lines", {}).get(key, getattr(raw, "key_lines", {}).get(section))

    if not is_import_path(spec["task"]["name"]) and spec["task"]["name"] not in task_names():
        choices = ", ".join(repr(k) for k in task_names())
        raise checker.fail(line_of("task", "name"), f"Expected 'task.name' to be one of {choices} "
                                                     f"(got {spec['task']['name']!r})")
    try:
        task = get_task(spec["task"]["name"])
    except ValueError as err:
        raise checker.fail(line_of("task", "name"), str(err)) from None
    check_options(checker, raw["task"].get("options") or {}, task.option_defaults, "task.options",
                   line_of("task", "options"))
    _check_memory(checker, task, raw["task"].get("options") or {}, line_of("task", "options"))
    if is_import_path(spec["model"]["name"]):
        _check_user_model(checker, spec, line_of)
    elif spec["model"]["name"] not in task.model_options:
        choices = ", ".join(repr(k) for k in task.model_options)
        raise checker.fail(line_of("model", "name"), f"Expected 'model.name' to be one of {choices} for task "
                                                       f"{task.name!r} (got {spec['model']['name']!r})")
    else:
        check_options(checker, raw["model"].get("options") or {}, task.model_options[spec["model"]["name"]],
                       "model.options", line_of("model", "options"))
    _check_user_optimizer(checker, spec, line_of)
    if spec["formulation"]["name"] not in FORMULATIONS:
        choices = ", ".join(repr(k) for k in FORMULATIONS)
        raise checker.fail(line_of("formulation", "name"), f"Expected 'formulation.name' to be one of {choices} "
                                                             f"(got {spec['formulation']['name']!r})")
    if get_strategy(spec["strategy"]).augments and not task.supports_augmentation:
        raise checker.fail(getattr(raw, "key_lines", {}).get("strategy"),
                           f"Expected 'strategy' to be a strategy task {task.name!r} supports "
                           f"(got {spec['strategy']!r}: "
                           "the task has no augment())")


def _check_memory(checker: Checker, task: Any, options: Mapping, line: int | None) -> None:
    """Refuse task options whose data would take more than half of this machine's memory.

    Each value may be within its own limit while their product is not: ``points: 100000`` is a 40 GB matrix.
    """
    need = getattr(task, "data_bytes", lambda _: 0)({**getattr(task, "option_defaults", {}), **options})
    try:
        have = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):  # no sysconf (Windows): not checked
        return
    if need > have // 2:
        raise checker.fail(line, f"Expected 'task.options' whose data fit in memory (got about {need / 2**30:.1f} "
                                 f"GiB of data, on a machine with {have / 2**30:.1f} GiB); lower the sizes "
                                 f"({', '.join(sorted(options)) or 'points, n_train, ...'})")


def _check_groups(checker: Checker, raw: list) -> list[dict[str, Any]]:
    """``optimizer.groups``: blocks of parameters (by an fnmatch pattern on their names) with their own settings."""
    lines = getattr(raw, "item_lines", [None] * len(raw))
    return [checker.section(item, GROUP_SCHEMA, f"optimizer.groups[{i}]", lines[i]) for i, item in enumerate(raw)]


def _check_user_model(checker: Checker, spec: Mapping, line_of: Callable[[str, str], int | None]) -> None:
    """Import a ``model.name`` written ``package.module:attribute`` and check it takes ``model.options``."""
    name, options = spec["model"]["name"], spec["model"]["options"]
    try:
        load_model_factory(name, options)
    except ImportPathError as err:
        key = "options" if "does not accept" in str(err) else "name"
        raise checker.fail(line_of("model", key) or line_of("model", "name"), f"'model.{key}': {err}") from None


def _check_user_optimizer(checker: Checker, spec: Mapping, line_of: Callable[[str, str], int | None]) -> None:
    """Import an ``optimizer.name`` written as an import path; check it takes (params, lr, weight_decay, options)."""
    optimizer = spec["optimizer"]
    if not is_import_path(optimizer["name"]):
        return
    try:
        load_optimizer(optimizer["name"], optimizer_kwargs(optimizer))
    except ImportPathError as err:
        raise checker.fail(line_of("optimizer", "name"), f"'optimizer.name': {err}") from None
    if optimizer.get("groups"):
        raise checker.fail(line_of("optimizer", "groups"), f"Expected no 'optimizer.groups' with optimizer "
                                                           f"{optimizer['name']!r}: groups take the named "
                                                           f"optimizers {', '.join(map(repr, OPTIMIZERS))}")


def _check_schedules(checker: Checker, spec: dict, lines: Mapping[str, Any]) -> None:
    """Normalise ``training.scheduler``/``variable_scheduler`` to ``{name, options}`` and try them on every epoch."""
    from constrained_eq.training.schedules import resolve_schedule

    training = spec["training"]
    for key in ("scheduler", "variable_scheduler"):
        value = training[key]
        if value is None:
            continue
        line = lines.get(f"training.{key}")
        if isinstance(value, str):
            value = {"name": value, "options": {}}
        unknown = set(value) - {"name", "options"}
        if unknown or not isinstance(value.get("name"), str) or not isinstance(value.get("options", {}), dict):
            raise checker.fail(line, f"Expected 'training.{key}' to be a schedule name or a mapping {{name, options}} "
                                     f"(got {value!r})")
        value = {"name": value["name"], "options": dict(value.get("options", {}))}
        if key == "variable_scheduler" and spec["variable_optimizer"] == "primal":
            raise checker.fail(line, "Expected no 'training.variable_scheduler' with variable_optimizer 'primal' (γ is "
                                     "stepped by the primal optimizer and follows 'training.scheduler')")
        try:
            resolve_schedule(value["name"], value["options"], training["epochs"])
        except ValueError as err:
            raise checker.fail(line, f"'training.{key}': {err}") from None
        training[key] = value


def optimizer_kwargs(optimizer: Mapping[str, Any]) -> dict[str, Any]:
    """The keyword arguments of the primal optimizer: ``lr``, ``weight_decay`` and ``optimizer.options``."""
    return {"lr": optimizer["lr"], "weight_decay": optimizer["weight_decay"], **optimizer.get("options", {})}


def _check_constraints(checker: Checker, raw: Any, line: int | None) -> list[Any]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise checker.fail(line, f"Expected 'constraints' to be a list of constraint reprs or mappings (got {raw!r})")
    out = []
    for index, item in enumerate(raw):
        item_line = raw.item_lines[index] if hasattr(raw, "item_lines") else line
        if not isinstance(item, str | dict):
            raise checker.fail(item_line, f"Expected 'constraints[{index}]' to be a string like "
                                          f"'Equality(target=gammas)' or a mapping with 'kind' (got {item!r})")
        kind = entry_kind(item)
        if kind not in CONSTRAINT_KINDS:
            choices = ", ".join(repr(k) for k in CONSTRAINT_KINDS)
            raise checker.fail(item_line, f"Expected the kind of 'constraints[{index}]' to be one of {choices} "
                                          f"(got {kind!r})")
        out.append(plain(item))
    built: dict[str, int] = {}
    for index, item in enumerate(out):
        item_line = raw.item_lines[index] if hasattr(raw, "item_lines") else line
        constraint = _parse_constraint(checker, item, index, item_line)
        if constraint is None:
            continue
        key = repr(constraint)
        if key in built:
            raise checker.fail(item_line, f"Expected 'constraints[{index}]' to differ from 'constraints[{built[key]}]' "
                                          f"(got {key} twice); remove the duplicate")
        built[key] = index
    return out


def _parse_constraint(checker: Checker, item: Any, index: int, line: int | None) -> Any:
    """Build one constraint entry to check it (nothing is kept)."""
    where = f"constraints[{index}]"
    try:
        return parse_entry(item)
    except ImportPathError as err:
        raise checker.fail(line, f"'{where}': {err}") from None
    except (ValueError, TypeError, SyntaxError, RecursionError, MemoryError) as err:
        raise checker.fail(line, f"Expected '{where}' to be a valid constraint such as 'Equality(target=gammas)' "
                                 f"or 'Resilient(target=gammas, rho=1.0)' (got {item!r}: {err})") from None


def _check_formulation(checker: Checker, raw: Mapping, spec: dict) -> None:
    """Build the formulation the strategy uses with the file's options; check it fits the constraints."""
    from constrained_eq.core.formulations import resolve_formulation

    name, options = formulation_for(spec["strategy"], FormulationSection(**spec["formulation"]),
                                    TrainingSection(**spec["training"]))
    section = raw.get("formulation")
    lines = getattr(raw, "key_lines", {})
    try:
        formulation = resolve_formulation(name, **options)
    except (ValueError, TypeError) as err:
        raw_options = section.get("options") if isinstance(section, dict) else None
        key_lines = getattr(raw_options, "key_lines", {})
        named = next((k for k in options if f"'{k}'" in str(err) or f" {k}" in str(err)), None)
        where = f"formulation.options.{named}" if named else "formulation.options"
        line = key_lines.get(named) if named else None
        if line is None:
            line = _options_line(raw)
        raise checker.fail(line, f"Expected '{where}' to be an option formulation {name!r} accepts "
                                 f"(got {options.get(named, options) if named else options!r}): {err}") from None
    _check_unused_options(checker, raw, spec, name)
    if formulation.expects_multiplier and not get_strategy(spec["strategy"]).drops_constraints:
        kinds = [entry_kind(item) for item in spec["constraints"]]
        if not any(kind in ("Equality", "Inequality", "Resilient") for kind in kinds):
            raise checker.fail(lines.get("constraints", lines.get("formulation", lines.get("strategy"))),
                               f"Expected 'constraints' to hold a hard constraint (Equality, Inequality or "
                               f"Resilient) for formulation {name!r}, which enforces them with multipliers "
                               f"(got {kinds or 'none'}); add one, or use strategy 'penalty'/'cr'/'vanilla' or "
                               "formulation 'penalty'/'none'")


def _options_line(raw: Mapping) -> int | None:
    """The line of ``formulation.options`` in the file (else of ``formulation``; ``None`` for an override)."""
    section = raw.get("formulation")
    return getattr(section, "key_lines", {}).get("options", getattr(raw, "key_lines", {}).get("formulation"))


def _check_unused_options(checker: Checker, raw: Mapping, spec: dict, used: str) -> None:
    """Refuse ``formulation.options`` that the strategy leaves unused *and* that the named formulation refuses.

    A file's options apply only when ``formulation.name`` is the strategy's formulation (one file serves
    every strategy, so options of another formulation are kept for the strategies that use it). Options
    that fit neither were meant for the strategy's formulation under the wrong (often the default) name:
    without this check they would be dropped without a word.
    """
    from constrained_eq.core.formulations import resolve_formulation

    named, options = spec["formulation"]["name"], spec["formulation"]["options"]
    if not options or named == used:
        return
    try:
        resolve_formulation(named, **options)
    except (ValueError, TypeError):
        raise checker.fail(_options_line(raw),
                           f"Expected 'formulation.options' {dict(options)!r} to be options of formulation "
                           f"{named!r} ('formulation.name'), which is not what strategy {spec['strategy']!r} "
                           f"runs ({used!r}); to set options of {used!r}, write 'formulation.name: {used}' "
                           f"(e.g. --set formulation.name={used})") from None


def load_problem_file(path: str | os.PathLike, overrides: Mapping[str, Any] | Iterable[Any] | None = None
                      ) -> dict[str, Any]:
    """Load, check and normalise a problem file.

    Args:
        path (str or PathLike): The YAML file.
        overrides (mapping or list, optional): Dotted keys set after loading, e.g. ``{"training.epochs": 2}``,
            or :class:`~constrained_eq.run.overrides.Override` objects (the command line's ``--set``, ``--epochs``,
            ``--seed``, ``--strategy``); checked like the file, errors naming the override.

    Returns:
        dict: The problem with every key present (see ``docs/running.md``) and ``"file"`` added.

    Raises:
        ProblemFileError: On a YAML syntax error, an unknown key, a wrong type or an unknown name.
    """
    path = Path(path)
    raw = read_yaml(path)
    checker = Checker(str(path))
    if not isinstance(raw, dict):
        raise checker.fail(1, "Expected the file to be a mapping with keys task, model, ... "
                              f"(got {type(raw).__name__})")
    apply_overrides(raw, as_overrides(overrides), checker.fail)
    check_plain(path, raw)  # also what the overrides set
    allowed = {**{k: None for k in SCHEMA}, **TOP, "dual_optimizer": None, "constraints": None}
    checker.keys(raw, allowed, "")
    lines = getattr(raw, "key_lines", {})
    spec: dict[str, Any] = {}
    for section, schema in SCHEMA.items():
        if section in ("task", "model") and section not in raw:
            raise checker.fail(1, f"Missing key '{section}' (a mapping with 'name' and optional 'options')")
        spec[section] = checker.section(raw.get(section), schema, section, lines.get(section))
    spec["optimizer"]["groups"] = _check_groups(checker, (raw.get("optimizer") or {}).get("groups") or [])
    for key, (check, default) in TOP.items():
        spec[key] = plain(checker.value(raw[key], check, key, lines.get(key))) if key in raw else default
    spec["dual_optimizer"] = _dual_optimizer(checker, raw.get("dual_optimizer", "sgd"), lines.get("dual_optimizer"))
    spec["constraints"] = (_check_constraints(checker, raw["constraints"], lines.get("constraints"))
                           if "constraints" in raw else list(DEFAULT_CONSTRAINTS))
    _check_names(checker, raw, spec)
    _check_formulation(checker, raw, spec)
    _check_schedules(checker, spec, _key_lines(raw))
    spec["constraint_lines"] = (list(getattr(raw.get("constraints"), "item_lines", [])) or
                                [lines.get("constraints")] * len(spec["constraints"]))
    spec["lines"] = _key_lines(raw)
    spec["file"] = str(path)
    return spec


def load_problem(path: str | os.PathLike, overrides: Mapping[str, Any] | Iterable[Any] | None = None) -> Problem:
    """Load and check a problem file (:func:`load_problem_file`) as a typed :class:`Problem`.

    Examples:
        >>> load_problem("problems/nbody_quick.yaml").training.epochs
        20
    """
    return Problem.from_spec(load_problem_file(path, overrides))


def _dual_optimizer(checker: Checker, raw: Any, line: int | None) -> dict[str, Any]:
    """``dual_optimizer: nupi`` or ``{name: nupi, options: {kappa_p: 10, kappa_i: 1, ema_nu: 0}}``."""
    from constrained_eq.core.solver.dual_optimizers import DUAL_OPTIMIZERS, NuPI

    spec = checker.section(raw, {"name": (choice(DUAL_OPTIMIZERS), REQUIRED), "options": (MAPPING, {})},
                           "dual_optimizer", line)
    if spec["options"] and spec["name"] != "nupi":
        raise checker.fail(line, f"Unknown key 'dual_optimizer.options'; dual optimizer {spec['name']!r} takes none")
    try:
        NuPI(**spec["options"])
    except (TypeError, ValueError) as err:
        raise checker.fail(line, f"Expected 'dual_optimizer.options' to be kappa_p, kappa_i, ema_nu: {err}") from None
    return spec


def _key_lines(raw: Any, prefix: str = "") -> dict[str, int]:
    """Line of every key of the file as ``{"section.key": line}`` (for errors found while building)."""
    out: dict[str, int] = {}
    for key, line in getattr(raw, "key_lines", {}).items():
        name = f"{prefix}{key}"
        out[name] = line
        if isinstance(raw[key], dict):
            out.update(_key_lines(raw[key], f"{name}."))
    return out


def problem_hash(spec: Mapping[str, Any]) -> str:
    """SHA-256 of the normalised problem (without its file name and line numbers)."""
    data = {k: v for k, v in spec.items() if k not in LOCATION_KEYS}
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()
