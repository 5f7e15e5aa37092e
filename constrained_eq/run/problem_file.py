"""Problem files (YAML): load with line numbers, check every key and value, fill in the defaults.

:func:`load_problem_file` returns the normalised problem as plain data (every key present, defaults
filled in); a mistake raises :class:`ProblemFileError` naming the file, the line and the allowed
values. Nothing is built here: :mod:`constrained_eq.run.build` turns the checked problem into objects.
See ``docs/running.md`` for the reference of every key.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from constrained_eq.core.strategies import STRATEGIES, formulation_for, get_strategy
from constrained_eq.run.imports import ImportPathError, is_import_path, load_model_factory, load_optimizer
from constrained_eq.run.overrides import apply_overrides, as_overrides
from constrained_eq.run.problem_yaml import ProblemFileError, _Loader, _plain

__all__ = ["ProblemFileError", "load_problem_file", "problem_hash", "STRATEGIES", "OPTIMIZERS", "LOCATION_KEYS"]

# keys of the loaded problem that say where things are, not what the problem is (left out of the hash)
LOCATION_KEYS = ("file", "constraint_lines", "lines")

OPTIMIZERS = ("adam", "sgd", "adamw")
VARIABLE_OPTIMIZERS = ("sgd", "primal")
CONSTRAINT_KINDS = ("Equality", "Inequality", "Resilient", "Penalty", "LieDerivative")


# ----------------------------------------------------------------------------- value checks
def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return (_is_int(v) or isinstance(v, float)) and math.isfinite(v)


Check = tuple[Callable[[Any], bool], str]
POS_INT: Check = (lambda v: _is_int(v) and v >= 1, "an integer ≥ 1")
INT: Check = (_is_int, "an integer")
POS_NUMBER: Check = (lambda v: _is_number(v) and v > 0, "a number > 0")
NONNEG_NUMBER: Check = (lambda v: _is_number(v) and v >= 0, "a number ≥ 0")
BOOL: Check = (lambda v: isinstance(v, bool), "true or false")
STR: Check = (lambda v: isinstance(v, str), "a string")
MAPPING: Check = (lambda v: isinstance(v, dict), "a mapping")


def _int_range(low: int, high: int) -> Check:
    """An integer in ``[low, high]``: every count has an upper bound, so no file allocates or loops without end."""
    return (lambda v: _is_int(v) and low <= v <= high, f"an integer in [{low}, {high}]")


def _optional(check: Check) -> Check:
    return (lambda v: v is None or check[0](v), f"null or {check[1]}")


def _choice(choices: Any) -> Check:
    listed = ", ".join(repr(c) for c in choices)
    return (lambda v: isinstance(v, str | int | float | bool | None) and v in choices, f"one of {listed}")


def _or_import_path(check: Check) -> Check:
    return (lambda v: check[0](v) or is_import_path(v), f"{check[1]} or an import path 'package.module:attribute'")


SCHEDULE: Check = (lambda v: v is None or isinstance(v, str | dict),
                   "null, a schedule name ('cosine', 'step', 'multistep', 'exponential', 'package.module:fn') or "
                   "a mapping {name, options}")


# section -> key -> (check, default); REQUIRED marks keys without a default
REQUIRED = object()
SCHEMA: dict[str, dict[str, tuple[Check, Any]]] = {
    "task": {"name": (STR, REQUIRED), "options": (MAPPING, {})},
    "model": {"name": (STR, REQUIRED), "options": (MAPPING, {})},
    "formulation": {"name": (STR, "lagrangian"), "options": (MAPPING, {})},
    "optimizer": {"name": (_or_import_path(_choice(OPTIMIZERS)), "adam"), "lr": (POS_NUMBER, 1e-3),
                  "weight_decay": (NONNEG_NUMBER, 0.0), "options": (MAPPING, {}),
                  "groups": ((lambda v: isinstance(v, list), "a list of mappings with 'params' (a pattern of "
                                                             "parameter names) and optional 'name', 'lr', "
                                                             "'weight_decay'"), [])},
    "training": {"epochs": (_int_range(1, 100_000), 10), "batch_size": (_int_range(1, 65_536), 32),
                 "seed": (_int_range(0, 2**32 - 1), 0), "eval_every": (_int_range(1, 100_000), 1),
                 "checkpoint_every": (_int_range(1, 100_000), 1), "log_every": (_int_range(1, 10_000), 10),
                 "steps_every": (_optional(_int_range(1, 1_000_000)), None),
                 "on_nonfinite": (_choice(("raise", "skip")), "raise"),
                 "averaging": (_choice(("none", "uniform", "ema")), "none"),
                 "average_start": (_int_range(0, 100_000), 0),
                 "ema_decay": ((lambda v: _is_number(v) and 0 < v < 1, "a number in (0, 1)"), 0.99),
                 "scheduler": (SCHEDULE, None), "variable_scheduler": (SCHEDULE, None),
                 "clip_grad_norm": (_optional(POS_NUMBER), None), "precision": (_choice(("fp32", "bf16")), "fp32")},
    "evaluation": {"project": (BOOL, True), "select": (STR, "auto"), "equivariance_error": (BOOL, True),
                   "feasibility_tol": (NONNEG_NUMBER, 1e-3)},
    "logging": {"tensorboard": (BOOL, False)},
}
TOP: dict[str, tuple[Check, Any]] = {
    "strategy": (_choice(STRATEGIES), "custom"),
    "dual_lr": (POS_NUMBER, 1e-2),
    "variable_optimizer": (_choice(VARIABLE_OPTIMIZERS), "sgd"),
    "variable_lr": (_optional(POS_NUMBER), None),
    "constrained_optimizer": (_choice(("simultaneous", "alternating_primal_dual", "alternating_dual_primal",
                                       "extrapolation")), "simultaneous"),
}
DEFAULT_CONSTRAINTS = ["Equality(target=gammas)"]
# task and model options whose meaning is fixed by their name across tasks: counts and sizes
NONNEG_INT: Check = (lambda v: _is_int(v) and v >= 0, "an integer ≥ 0")
SEED = _int_range(0, 2**32 - 1)
WIDTH = _int_range(1, 4096)
OPTION_CHECKS: dict[str, Check] = {
    **{name: _int_range(1, 1_000_000) for name in ("n_train", "n_val", "n_test", "num_per_class")},
    **{name: _int_range(1, 100_000) for name in ("points", "n_points", "delta_frame", "num_trials")},
    **{name: WIDTH for name in ("hidden", "hidden_nf", "hidden_channels", "num_filters", "emb_channels",
                                "num_gaussians", "max_num_neighbors", "dim")},
    **{name: _int_range(1, 64) for name in ("n_layers", "num_interactions", "num_modes")},
    **{name: SEED for name in ("data_seed", "split_seed")},
    "k": _int_range(1, 256),
    "num_timesteps": _int_range(1, 1000),
    "limit": _optional(_int_range(1, 10_000_000)),
    "neq_hidden": _optional(WIDTH),
    "neq_init_std": _optional(POS_NUMBER),
    "lmax_h": _int_range(0, 6),
    "lmax_attr": _int_range(0, 6),
}
ANY_INT = _int_range(-(2**31), 2**31 - 1)  # an integer option not listed above


class _Checker:
    def __init__(self, file: str) -> None:
        self.file = file

    def fail(self, line: int | None, message: str) -> ProblemFileError:
        return ProblemFileError(self.file, line, message)

    def value(self, value: Any, check: Check, where: str, line: int | None) -> Any:
        if not check[0](value):
            raise self.fail(line, f"Expected '{where}' to be {check[1]} (got {value!r})")
        return float(value) if check is POS_NUMBER or check is NONNEG_NUMBER else value

    def keys(self, mapping: Mapping, allowed: Mapping, where: str) -> None:
        for key in mapping:
            if key not in allowed:
                choices = ", ".join(repr(k) for k in allowed)
                line = getattr(mapping, "key_lines", {}).get(key, getattr(mapping, "line", None))
                name = f"{where}.{key}" if where else str(key)
                raise self.fail(line, f"Unknown key '{name}'; expected one of {choices}")

    def section(self, raw: Any, schema: Mapping[str, tuple[Check, Any]], where: str, line: int | None) -> dict:
        if isinstance(raw, str) and "name" in schema:
            raw = {"name": raw}  # shorthand: `formulation: resilient`
        if raw is None:
            raw = {}
        if not isinstance(raw, dict):
            raise self.fail(line, f"Expected '{where}' to be a mapping with keys {', '.join(schema)} (got {raw!r})")
        self.keys(raw, schema, where)
        out = {}
        for key, (check, default) in schema.items():
            key_line = getattr(raw, "key_lines", {}).get(key, getattr(raw, "line", line))
            if key not in raw:
                if default is REQUIRED:
                    raise self.fail(line if line is not None else getattr(raw, "line", None),
                                    f"Missing key '{where}.{key}' ({check[1]})")
                out[key] = _plain(default)
            else:
                out[key] = _plain(self.value(raw[key], check, f"{where}.{key}", key_line))
        return out


def _check_options(checker: _Checker, options: Mapping, defaults: Mapping[str, Any], where: str,
                   line: int | None) -> None:
    if defaults:
        checker.keys(options, defaults, where)
    if not defaults and options:
        raise checker.fail(line, f"Unknown key '{where}.{next(iter(options))}'; '{where}' takes no options")
    for key, value in options.items():
        default = defaults[key]
        key_line = getattr(options, "key_lines", {}).get(key, line)
        if key in OPTION_CHECKS:
            checker.value(value, OPTION_CHECKS[key], f"{where}.{key}", key_line)
            continue
        if default is None:
            continue
        if isinstance(default, bool):
            check = BOOL
        elif isinstance(default, int):
            check = ANY_INT
        elif isinstance(default, float):
            check = (_is_number, "a number")
        elif isinstance(default, str):
            check = STR
        else:
            continue
        checker.value(value, check, f"{where}.{key}", key_line)


def _check_names(checker: _Checker, raw: Mapping, spec: dict) -> None:
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
    _check_options(checker, raw["task"].get("options") or {}, task.option_defaults, "task.options",
                   line_of("task", "options"))
    if is_import_path(spec["model"]["name"]):
        _check_user_model(checker, spec, line_of)
    elif spec["model"]["name"] not in task.model_options:
        choices = ", ".join(repr(k) for k in task.model_options)
        raise checker.fail(line_of("model", "name"), f"Expected 'model.name' to be one of {choices} for task "
                                                       f"{task.name!r} (got {spec['model']['name']!r})")
    else:
        _check_options(checker, raw["model"].get("options") or {}, task.model_options[spec["model"]["name"]],
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


GROUP_SCHEMA: dict[str, tuple[Check, Any]] = {
    "params": (STR, REQUIRED), "name": (_optional(_choice(OPTIMIZERS)), None),
    "lr": (_optional(POS_NUMBER), None), "weight_decay": (_optional(NONNEG_NUMBER), None),
}


def _check_groups(checker: _Checker, raw: list) -> list[dict[str, Any]]:
    """``optimizer.groups``: blocks of parameters (by an fnmatch pattern on their names) with their own settings."""
    lines = getattr(raw, "item_lines", [None] * len(raw))
    return [checker.section(item, GROUP_SCHEMA, f"optimizer.groups[{i}]", lines[i]) for i, item in enumerate(raw)]


def _check_user_model(checker: _Checker, spec: Mapping, line_of: Callable[[str, str], int | None]) -> None:
    """Import a ``model.name`` written ``package.module:attribute`` and check it takes ``model.options``."""
    name, options = spec["model"]["name"], spec["model"]["options"]
    try:
        load_model_factory(name, options)
    except ImportPathError as err:
        key = "options" if "does not accept" in str(err) else "name"
        raise checker.fail(line_of("model", key) or line_of("model", "name"), f"'model.{key}': {err}") from None


def _check_user_optimizer(checker: _Checker, spec: Mapping, line_of: Callable[[str, str], int | None]) -> None:
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


def _check_schedules(checker: _Checker, spec: dict, lines: Mapping[str, Any]) -> None:
    """Normalise ``training.scheduler``/``variable_scheduler`` to ``{name, options}`` and try them on every epoch."""
    from constrained_eq.run.training_options import resolve_schedule

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


def _check_constraints(checker: _Checker, raw: Any, line: int | None) -> list[Any]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise checker.fail(line, f"Expected 'constraints' to be a list of constraint reprs or mappings (got {raw!r})")
    out = []
    for index, item in enumerate(raw):
        item_line = raw.item_lines[index] if hasattr(raw, "item_lines") else line
        if isinstance(item, str):
            kind = item.split("(", 1)[0].strip()
        elif isinstance(item, dict):
            kind = item.get("kind")
        else:
            raise checker.fail(item_line, f"Expected 'constraints[{index}]' to be a string like "
                                          f"'Equality(target=gammas)' or a mapping with 'kind' (got {item!r})")
        if kind not in CONSTRAINT_KINDS:
            choices = ", ".join(repr(k) for k in CONSTRAINT_KINDS)
            raise checker.fail(item_line, f"Expected the kind of 'constraints[{index}]' to be one of {choices} "
                                          f"(got {kind!r})")
        out.append(_plain(item))
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


def _parse_constraint(checker: _Checker, item: Any, index: int, line: int | None) -> Any:
    """Build one constraint entry to check it (nothing is kept); ``None`` for an unavailable kind."""
    import ast

    from constrained_eq.core import constraints as kinds

    where = f"constraints[{index}]"
    try:
        kind = item["kind"] if isinstance(item, dict) else item.split("(", 1)[0].strip()
        if kind == "LieDerivative":
            try:
                from constrained_eq.homotopy import LieDerivative
            except ImportError:
                return None
            if isinstance(item, dict):
                return LieDerivative(**{k: v for k, v in item.items() if k != "kind"})
            call = ast.parse(item.strip(), mode="eval").body
            if not isinstance(call, ast.Call) or call.args:
                raise ValueError("expected LieDerivative(name=value, ...)")
            return LieDerivative(**{kw.arg: kw.value.id if isinstance(kw.value, ast.Name)
                                    else ast.literal_eval(kw.value) for kw in call.keywords})
        if isinstance(item, dict):
            return getattr(kinds, kind)(**{k: v for k, v in item.items() if k != "kind"})
        return kinds.parse(item)
    except ImportPathError as err:
        raise checker.fail(line, f"'{where}': {err}") from None
    except (ValueError, TypeError, SyntaxError, RecursionError, MemoryError) as err:
        raise checker.fail(line, f"Expected '{where}' to be a valid constraint such as 'Equality(target=gammas)' "
                                 f"or 'Resilient(target=gammas, rho=1.0)' (got {item!r}: {err})") from None


def _check_formulation(checker: _Checker, raw: Mapping, spec: dict) -> None:
    """Build the formulation the strategy uses with the file's options; check it fits the constraints."""
    from constrained_eq.core.formulations import resolve_formulation

    name, options = formulation_for(spec["strategy"], spec["formulation"], spec["training"])
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
            line = getattr(section, "key_lines", {}).get("options", lines.get("formulation"))
        raise checker.fail(line, f"Expected '{where}' to be an option formulation {name!r} accepts "
                                 f"(got {options.get(named, options) if named else options!r}): {err}") from None
    if formulation.expects_multiplier and not get_strategy(spec["strategy"]).drops_constraints:
        kinds = [(item.get("kind") if isinstance(item, dict) else item.split("(", 1)[0].strip())
                 for item in spec["constraints"]]
        if not any(kind in ("Equality", "Inequality", "Resilient") for kind in kinds):
            raise checker.fail(lines.get("constraints", lines.get("formulation", lines.get("strategy"))),
                               f"Expected 'constraints' to hold a hard constraint (Equality, Inequality or "
                               f"Resilient) for formulation {name!r}, which enforces them with multipliers "
                               f"(got {kinds or 'none'}); add one, or use strategy 'penalty'/'cr'/'vanilla' or "
                               "formulation 'penalty'/'none'")


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
    raw = _read_yaml(path)
    checker = _Checker(str(path))
    if not isinstance(raw, dict):
        raise checker.fail(1, "Expected the file to be a mapping with keys task, model, ... "
                              f"(got {type(raw).__name__})")
    apply_overrides(raw, as_overrides(overrides), checker.fail)
    _check_plain(path, raw)  # also what the overrides set
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
        spec[key] = _plain(checker.value(raw[key], check, key, lines.get(key))) if key in raw else default
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


def _dual_optimizer(checker: _Checker, raw: Any, line: int | None) -> dict[str, Any]:
    """``dual_optimizer: nupi`` or ``{name: nupi, options: {kappa_p: 10, kappa_i: 1, ema_nu: 0}}``."""
    from constrained_eq.core.dual_optimizers import DUAL_OPTIMIZERS, NuPI

    spec = checker.section(raw, {"name": (_choice(DUAL_OPTIMIZERS), REQUIRED), "options": (MAPPING, {})},
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


# resource limits of a problem file: each is refused before the file is turned into objects
MAX_BYTES = 64 << 10  # 64 KiB; the problem files of this project are 1-2 KiB
MAX_DEPTH = 64  # nesting of mappings and sequences
MAX_NODES = 10_000  # values after every alias is expanded (an alias "bomb" expands exponentially)


def _line_of_byte(data: bytes, offset: int) -> int:
    return data.count(b"\n", 0, offset) + 1


def _read_yaml(path: Path) -> Any:
    """Read, decode and parse a problem file within :data:`MAX_BYTES`, :data:`MAX_DEPTH` and :data:`MAX_NODES`.

    Raises:
        ProblemFileError: Naming the file and the line of the first offending byte or node.
    """
    if not path.is_file():
        raise ProblemFileError(path, None, "no such file" if not path.exists() else "not a file")
    size = path.stat().st_size
    if size > MAX_BYTES:
        raise ProblemFileError(path, None, f"the file has {size} bytes, more than the {MAX_BYTES} a problem file "
                                           "may have; is it the right file?")
    data = path.read_bytes()
    if b"\0" in data:
        raise ProblemFileError(path, _line_of_byte(data, data.index(b"\0")),
                               "the file holds a NUL byte: it is binary, not a YAML text file")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ProblemFileError(path, _line_of_byte(data, err.start),
                               f"the file is not UTF-8 (byte 0x{data[err.start]:02x}); save it as UTF-8") from None
    try:
        _check_shape(path, text)
        raw = yaml.load(text, Loader=lambda stream: _named(stream, path))  # noqa: S506 (a SafeLoader)
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        problem = (f"nesting deeper than {MAX_DEPTH} levels; a problem file needs a few"
                   if "nesting depth" in str(err.problem) else f"invalid YAML: {err.problem}")
        raise ProblemFileError(path, mark.line + 1 if mark else None, problem) from None
    except yaml.reader.ReaderError as err:
        raise ProblemFileError(path, text.count("\n", 0, err.position) + 1,
                               f"invalid YAML: {err.reason} character {err.character!r}") from None
    except yaml.YAMLError as err:
        raise ProblemFileError(path, None, f"invalid YAML: {' '.join(str(err).split())}") from None
    _check_plain(path, raw)
    return raw


def _check_shape(path: Path, text: str) -> None:
    """Walk the YAML events (no recursion, nothing built): refuse too deep nesting and too large expansions."""
    sizes: dict[str, int] = {}
    stack: list[list[Any]] = [[0, None]]  # [node count, anchor] of each open collection
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when present: ~20x faster, same events
    for event in yaml.parse(text, Loader=loader):
        line = event.start_mark.line + 1
        if isinstance(event, yaml.CollectionStartEvent):
            stack.append([1, event.anchor])
            if len(stack) - 1 > MAX_DEPTH:
                raise ProblemFileError(path, line, f"nesting deeper than {MAX_DEPTH} levels; a problem file needs "
                                                   "a few")
            continue
        if isinstance(event, yaml.CollectionEndEvent):
            count, anchor = stack.pop()
        elif isinstance(event, yaml.AliasEvent):
            if event.anchor not in sizes:
                continue  # the composer reports the undefined alias with its line
            count, anchor = sizes[event.anchor], None
        elif isinstance(event, yaml.ScalarEvent):
            count, anchor = 1, event.anchor
        else:
            continue
        if anchor is not None:
            sizes[anchor] = count
        stack[-1][0] += count
        if stack[-1][0] > MAX_NODES or count > MAX_NODES:
            raise ProblemFileError(path, line, f"the file holds more than {MAX_NODES} values once its aliases "
                                               "(*name) are expanded; a problem file needs a few hundred")


_PLAIN_TYPES = (str, int, float, bool, type(None))


def _check_plain(path: Path, raw: Any, line: int | None = 1) -> None:
    """Refuse keys that are not strings and values that are not plain (``!!binary``, ``!!set``, dates)."""
    if isinstance(raw, dict):
        lines = getattr(raw, "key_lines", {})
        for key, value in raw.items():
            if not isinstance(key, str):
                raise ProblemFileError(path, lines.get(key, getattr(raw, "line", line)),
                                       f"Expected every key to be a string (got {key!r})")
            _check_plain(path, value, lines.get(key, line))
    elif isinstance(raw, list):
        item_lines = getattr(raw, "item_lines", [])
        for index, value in enumerate(raw):
            _check_plain(path, value, item_lines[index] if index < len(item_lines) else line)
    elif not isinstance(raw, _PLAIN_TYPES):
        raise ProblemFileError(path, line, f"Expected a plain value (string, number, true/false, null, list or "
                                           f"mapping) (got {type(raw).__name__} {raw!r}: YAML tags such as "
                                           "!!binary, !!set and dates are not read)")


def _named(stream: str, path: Path) -> _Loader:
    loader = _Loader(stream)
    loader.name = str(path)
    return loader


def problem_hash(spec: Mapping[str, Any]) -> str:
    """SHA-256 of the normalised problem (without its file name and line numbers)."""
    data = {k: v for k, v in spec.items() if k not in LOCATION_KEYS}
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()
