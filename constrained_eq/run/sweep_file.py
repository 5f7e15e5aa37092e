r"""Sweep definitions: the swept parameters (``--param KEY=SPEC``), sweep files, and their checks.

Parameters (``--param KEY=SPEC``):

=========================  =================================================================
``choice:a,b,c``           one of the listed values (read as YAML: ``5e-4`` is a float)
``loguniform:low:high``    a float, uniform in log space
``uniform:low:high``       a float
``int:low:high``           an integer in [low, high]
=========================  =================================================================

A *sweep file* (``sweeps/*.yaml``) holds ``problem`` (relative to the file), ``set``, ``params``,
``seeds``, ``trials`` and ``study``. :func:`check_sweep` loads the problem with every extreme value
of every parameter before any run. Running a sweep is :mod:`constrained_eq.run.sweep`'s.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["KINDS", "Param", "Sweep", "parse_param", "load_sweep", "check_sweep"]


KINDS = ("choice", "loguniform", "uniform", "int")


@dataclass(frozen=True)
class Param:
    """One swept key: ``name`` (dotted), ``kind`` (:data:`KINDS`), and its ``values`` or ``(low, high)``."""

    name: str
    kind: str
    values: tuple[Any, ...]
    origin: str

    def suggest(self, trial: Any) -> Any:
        """Draw the value of this parameter for an Optuna ``trial``."""
        if self.kind == "choice":
            return trial.suggest_categorical(self.name, list(self.values))
        low, high = self.values
        if self.kind == "int":
            return trial.suggest_int(self.name, low, high)
        return trial.suggest_float(self.name, low, high, log=self.kind == "loguniform")


@dataclass
class Sweep:
    """A checked sweep: the problem file, overrides, parameters, seeds and the study's settings."""

    problem: Path
    params: list[Param]
    seeds: list[int] | None = None
    trials: int | None = None
    overrides: list[Any] = field(default_factory=list)
    study: str | None = None
    storage: str | None = None
    workers: int = 1
    out: Path = Path("runs")
    device: str = "cpu"
    quiet: bool = True

    @property
    def name(self) -> str:
        """The study's name (default: ``<problem stem>-sweep``)."""
        return self.study or f"{self.problem.stem}-sweep"

    @property
    def folder(self) -> Path:
        """The sweep folder ``<out>/<name>`` (the name made safe, the folder inside ``out``: see ``run_folder``)."""
        from constrained_eq.training.run_folder import run_folder

        return run_folder(self.out, f"{self.name}.sweep")

    @property
    def grid(self) -> dict[str, list[Any]] | None:
        """The search space when every parameter is a ``choice``; else ``None``."""
        if self.params and all(p.kind == "choice" for p in self.params):
            return {p.name: list(p.values) for p in self.params}
        return None

    def n_trials(self) -> int:
        """``trials``, or the grid's size for an all-``choice`` sweep."""
        if self.trials is not None:
            return self.trials
        if self.grid is None:
            raise ValueError("Expected '--trials N' for a sweep with a loguniform, uniform or int parameter")
        return math.prod(len(v) for v in self.grid.values())

    def storage_url(self) -> str:
        """``storage``, or a SQLite file ``study.db`` in the sweep folder."""
        return self.storage or f"sqlite:///{(self.folder / 'study.db').resolve()}"


def parse_param(text: str, flag: str = "--param") -> Param:
    """Parse ``KEY=KIND:…`` (see the module docstring).

    Examples:
        >>> parse_param("optimizer.lr=loguniform:1e-4:1e-2").values
        (0.0001, 0.01)
        >>> parse_param("dual_lr=choice:1e-3,1e-2").values
        (0.001, 0.01)

    Raises:
        ValueError: Naming the ``--param`` and what was expected.
    """
    from constrained_eq.run.overrides import parse_set, parse_value

    origin = f"{flag} {text}"
    name, sep, spec = text.partition("=")
    kind, _, rest = spec.partition(":")
    if not sep or kind not in KINDS or not rest:
        raise ValueError(f"{origin}: Expected KEY=KIND:VALUES with KIND one of {', '.join(KINDS)}, e.g. "
                         "'optimizer.lr=loguniform:1e-4:1e-2' or 'dual_lr=choice:1e-3,1e-2'")
    parse_set(f"{name}=0", flag)  # the key must be a dotted name
    if kind == "choice":
        values = tuple(parse_value(v.strip(), origin) for v in rest.split(","))
        same = [(a, b) for i, a in enumerate(values) for b in values[i + 1:] if a == b or repr(a) == repr(b)]
        if same:  # `1,1.0` too: the same value to the problem, one trial twice
            a, b = same[0]
            raise ValueError(f"{origin}: Expected distinct choices (got {list(values)}: {a!r} and {b!r} are the "
                             "same value)")
        return Param(name.strip(), kind, values, origin)
    bounds = tuple(parse_value(v.strip(), origin) for v in rest.split(":"))
    number = int if kind == "int" else (int, float)
    if len(bounds) != 2 or not all(isinstance(b, number) and not isinstance(b, bool) for b in bounds) \
            or not bounds[0] < bounds[1] or (kind == "loguniform" and bounds[0] <= 0):
        need = "integers" if kind == "int" else "numbers" + (" > 0" if kind == "loguniform" else "")
        raise ValueError(f"{origin}: Expected {kind}:LOW:HIGH with {need} LOW < HIGH (got {rest!r})")
    return Param(name.strip(), kind, tuple(float(b) if kind != "int" else b for b in bounds), origin)


def load_sweep(path: str | os.PathLike) -> dict[str, Any]:
    """Read a sweep file: ``problem`` (relative to the file), ``params``, ``seeds``, ``trials``, ``set``, ``study``.

    Raises:
        ProblemFileError: On an unknown key or a value of the wrong type, naming the file and the line.
    """
    from constrained_eq.run.problem_schema import Checker
    from constrained_eq.run.problem_yaml import ProblemFileError, plain, read_yaml

    path = Path(path)
    raw = read_yaml(path)  # the problem files' limits: size, depth, alias expansion, plain values only
    checker = Checker(str(path))
    if not isinstance(raw, dict):
        raise checker.fail(1, f"Expected the sweep file to be a mapping with keys problem, params, ... "
                              f"(got {type(raw).__name__})")
    allowed = {"problem": None, "params": None, "seeds": None, "trials": None, "set": None, "study": None}
    checker.keys(raw, allowed, "")
    lines = getattr(raw, "key_lines", {})
    expect = {"problem": (str, "a path"), "params": (dict, "a mapping KEY: KIND:VALUES"),
              "seeds": (list, "a list of integers"), "trials": (int, "an integer ≥ 1"), "set": (dict, "a mapping"),
              "study": (str, "a string")}
    for key, value in raw.items():
        kind, what = expect[key]
        if not isinstance(value, kind) or isinstance(value, bool) or (key == "trials" and value < 1) or (
                key == "seeds" and not all(isinstance(s, int) and not isinstance(s, bool) for s in value)):
            raise checker.fail(lines.get(key), f"Expected '{key}' to be {what} (got {value!r})")
    if "problem" not in raw:
        raise checker.fail(1, "Missing key 'problem' (the problem file, relative to the sweep file)")
    out = plain(dict(raw))
    out["problem"] = path.parent / raw["problem"]
    params = []
    for name, spec in (raw.get("params") or {}).items():
        try:
            params.append(parse_param(f"{name}={spec}", flag="params:"))
        except ValueError as err:
            raise ProblemFileError(path, raw["params"].key_lines[name], str(err)) from None
    out["params"] = params
    out["set_lines"] = {key: raw["set"].key_lines[key] for key in raw.get("set") or {}}
    return out


def check_sweep(sweep: Sweep) -> None:
    """Load the problem with every extreme value of every parameter, so that a bad one fails before any run.

    Raises:
        ProblemFileError: Naming the ``--param`` whose value the problem file refuses.
    """
    from constrained_eq.run.overrides import Override
    from constrained_eq.run.problem_file import load_problem_file

    if not sweep.params:
        raise ValueError("Expected at least one '--param KEY=KIND:VALUES' (or 'params' in the sweep file)")
    if len({p.name for p in sweep.params}) != len(sweep.params):
        raise ValueError("Expected each swept key once (got " + ", ".join(p.name for p in sweep.params) + ")")
    repeated = sorted({s for s in sweep.seeds or [] if list(sweep.seeds).count(s) > 1})
    if repeated:
        raise ValueError(f"Expected distinct seeds (got {', '.join(map(str, repeated))} more than once in "
                         f"{list(sweep.seeds)}): each seed is one run of every trial")
    seeded = [p for p in sweep.params if p.name == "training.seed"]
    if seeded and sweep.seeds:
        raise ValueError(f"Expected either seeds or a swept 'training.seed', not both (got '{seeded[0].origin}' "
                         f"and seeds {list(sweep.seeds)}): each seed sets training.seed")
    for param in sweep.params:
        for value in param.values:
            load_problem_file(sweep.problem, [*sweep.overrides, Override(tuple(param.name.split(".")), value,
                                                                         param.origin)])
    sweep.n_trials()

