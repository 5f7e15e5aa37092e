"""The problem file's schema: every section's keys, their checks and defaults, and the checker that applies them.

A check is a pair ``(predicate, description)``; a refused value reads "Expected '<key>' to be
<description> (got <value>)". :data:`SCHEMA` lists the sections, :data:`TOP` the top-level keys and
:data:`OPTION_CHECKS` the task and model options whose meaning is fixed by their name across tasks.
"""

from __future__ import annotations

import dataclasses
import unicodedata
from collections.abc import Callable, Mapping
from typing import Any

from constrained_eq._utils.checks import is_int, is_number
from constrained_eq._utils.import_path import is_import_path
from constrained_eq.run.problem_model import ABSENT_IS_DEFAULT, REQUIRED, SECTIONS, Problem, default_of
from constrained_eq.run.problem_yaml import ProblemFileError, plain
from constrained_eq.run.strategies import STRATEGIES

__all__ = ["Check", "Checker", "check_options", "CHECKS", "SCHEMA", "TOP", "OPTION_CHECKS", "GROUP_SCHEMA",
           "OPTIMIZERS", "DEFAULT_CONSTRAINTS", "choice"]


OPTIMIZERS = ("adam", "sgd", "adamw")
VARIABLE_OPTIMIZERS = ("sgd", "primal")


Check = tuple[Callable[[Any], bool], str]


POS_INT: Check = (lambda v: is_int(v) and v >= 1, "an integer ≥ 1")
INT: Check = (is_int, "an integer")
POS_NUMBER: Check = (lambda v: is_number(v) and v > 0, "a number > 0")
NONNEG_NUMBER: Check = (lambda v: is_number(v) and v >= 0, "a number ≥ 0")
BOOL: Check = (lambda v: isinstance(v, bool), "true or false")
STR: Check = (lambda v: isinstance(v, str), "a string")
MAPPING: Check = (lambda v: isinstance(v, dict), "a mapping")


def _int_range(low: int, high: int) -> Check:
    """An integer in ``[low, high]``: every count has an upper bound, so no file allocates or loops without end."""
    return (lambda v: is_int(v) and low <= v <= high, f"an integer in [{low}, {high}]")


def _optional(check: Check) -> Check:
    return (lambda v: v is None or check[0](v), f"null or {check[1]}")


def choice(choices: Any) -> Check:
    """One of ``choices`` (described as "one of 'a', 'b'")."""
    listed = ", ".join(repr(c) for c in choices)
    return (lambda v: isinstance(v, str | int | float | bool | None) and v in choices, f"one of {listed}")


def _or_import_path(check: Check) -> Check:
    return (lambda v: check[0](v) or is_import_path(v), f"{check[1]} or an import path 'package.module:attribute'")


SCHEDULE: Check = (lambda v: v is None or isinstance(v, str | dict),
                   "null, a schedule name ('cosine', 'step', 'multistep', 'exponential', 'package.module:fn') or "
                   "a mapping {name, options}")


# dotted key -> check; the defaults are the fields' of constrained_eq.run.problem_model (stated there once)
CHECKS: dict[str, Check] = {
    "task.name": STR, "task.options": MAPPING, "model.name": STR, "model.options": MAPPING,
    "formulation.name": STR, "formulation.options": MAPPING,
    "optimizer.name": _or_import_path(choice(OPTIMIZERS)), "optimizer.lr": POS_NUMBER,
    "optimizer.weight_decay": NONNEG_NUMBER, "optimizer.options": MAPPING,
    "optimizer.groups": (lambda v: isinstance(v, list), "a list of mappings with 'params' (a pattern of parameter "
                                                       "names) and optional 'name', 'lr', 'weight_decay'"),
    "training.epochs": _int_range(1, 100_000), "training.batch_size": _int_range(1, 65_536),
    "training.seed": _int_range(0, 2**32 - 1), "training.eval_every": _int_range(1, 100_000),
    "training.checkpoint_every": _int_range(1, 100_000), "training.log_every": _int_range(1, 10_000),
    "training.steps_every": _optional(_int_range(1, 1_000_000)),
    "training.on_nonfinite": choice(("raise", "skip")), "training.averaging": choice(("none", "uniform", "ema")),
    "training.average_start": _int_range(0, 100_000),
    "training.ema_decay": (lambda v: is_number(v) and 0 < v < 1, "a number in (0, 1)"),
    "training.scheduler": SCHEDULE, "training.variable_scheduler": SCHEDULE,
    "training.clip_grad_norm": _optional(POS_NUMBER), "training.precision": choice(("fp32", "bf16")),
    "training.compile": BOOL,
    "evaluation.project": BOOL, "evaluation.select": STR, "evaluation.equivariance_error": BOOL,
    "evaluation.feasibility_tol": NONNEG_NUMBER,
    "logging.tensorboard": BOOL,
    "strategy": choice(STRATEGIES), "dual_lr": POS_NUMBER, "variable_optimizer": choice(VARIABLE_OPTIMIZERS),
    "variable_lr": _optional(POS_NUMBER),
    "constrained_optimizer": choice(("simultaneous", "alternating_primal_dual", "alternating_dual_primal",
                                      "extrapolation")),
}
# section -> key -> (check, default), in the order of the dataclasses' fields (the order errors list keys in)
SCHEMA: dict[str, dict[str, tuple[Check, Any]]] = {
    section: {f.name: (CHECKS[f"{section}.{f.name}"], default_of(f)) for f in dataclasses.fields(kind)}
    for section, kind in SECTIONS.items()
}
TOP: dict[str, tuple[Check, Any]] = {
    f.name: (CHECKS[f.name], default_of(f)) for f in dataclasses.fields(Problem) if f.name in CHECKS
}


DEFAULT_CONSTRAINTS = ["Equality(target=gammas)"]


# task and model options whose meaning is fixed by their name across tasks: counts and sizes
NONNEG_INT: Check = (lambda v: is_int(v) and v >= 0, "an integer ≥ 0")
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


def _lookalike(key: str) -> str:
    """For a key that is not plain ASCII: the characters a reader cannot see (a zero-width space, a Cyrillic о)."""
    hidden = [c for c in dict.fromkeys(key) if not (c.isascii() and c.isprintable())]
    if not hidden:
        return ""
    return f" (it holds {', '.join(f'U+{ord(c):04X} {unicodedata.name(c, repr(c))}' for c in hidden)}: retype it)"


class Checker:
    """Applies checks to the values of one file, raising :class:`ProblemFileError` with the key's line."""

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
                raise self.fail(line, f"Unknown key '{name}'{_lookalike(str(key))}; expected one of {choices}")

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
                if default is not ABSENT_IS_DEFAULT:
                    out[key] = plain(default)
            else:
                out[key] = plain(self.value(raw[key], check, f"{where}.{key}", key_line))
        return out


def check_options(checker: Checker, options: Mapping, defaults: Mapping[str, Any], where: str,
                   line: int | None) -> None:
    """Check a task's or model's ``options`` against its defaults (and :data:`OPTION_CHECKS` by name)."""
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
            check = (is_number, "a number")
        elif isinstance(default, str):
            check = STR
        else:
            continue
        checker.value(value, check, f"{where}.{key}", key_line)


GROUP_SCHEMA: dict[str, tuple[Check, Any]] = {
    "params": (STR, REQUIRED), "name": (_optional(choice(OPTIMIZERS)), None),
    "lr": (_optional(POS_NUMBER), None), "weight_decay": (_optional(NONNEG_NUMBER), None),
}

