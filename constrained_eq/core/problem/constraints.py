"""Constraint kinds: what must hold, not how it is enforced.

A constraint is a small immutable value: a *target* that yields a vector of ``L`` per-element
quantities (one per layer, say) and the relation it must satisfy. One constraint object is one
vector of ``L`` constraints and gets one dense multiplier of size ``L``.

=================  ==========================  ==========================================
kind               constraint                  violation handed to the formulation
=================  ==========================  ==========================================
``Equality``       h(θ) = d                    h(θ) − d
``Inequality``     g(θ) ≤ b                    g(θ) − b
``Inequality``     a ≤ g(θ)  (``lower=a``)     a − g(θ)
``Inequality``     a ≤ g(θ) ≤ b                [g(θ) − b, a − g(θ)]  (2L entries)
``Resilient``      |h(θ)| ≤ u, u ≥ 0 learned   |h(θ)| − u, plus ρ/2 ‖u‖² in the objective
``Penalty``        (soft) w · Σ_i p_i(θ)       none: added to the objective with weight w
=================  ==========================  ==========================================

Right-hand sides (d, a, b) are finite numbers of any sign, or one number per entry (a list of L numbers).
Names are free text: they only label logs, records and checkpoints.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass, field
from typing import Any

import torch

from constrained_eq._utils.import_path import quote_import_paths
from constrained_eq.core.problem.rhs import RightHandSide, check_finite_number, check_rhs, rhs_size, rhs_tensor
from constrained_eq.core.problem.target import Target, as_target

__all__ = ["Constraint", "Equality", "Inequality", "Resilient", "Penalty", "parse", "parse_call"]

@dataclass(frozen=True, eq=True)
class Constraint:
    """Base of all constraint kinds. Subclasses set the class flags below.

    Attributes:
        is_equality: ``True`` for h = 0 constraints (multiplier of free sign).
        has_slack: ``True`` when the constraint owns a learnable slack ``u ≥ 0``.
        is_penalty: ``True`` for soft terms that never get a multiplier.
    """

    target: Target
    name: str | None = field(default=None, kw_only=True)

    is_equality = False
    has_slack = False
    is_penalty = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "target", as_target(self.target))
        if self.name is not None and (not isinstance(self.name, str) or not self.name.strip()):
            raise ValueError(f"{type(self).__name__}: expected 'name' to be a non-empty string (got {self.name!r})")
        object.__setattr__(self, "_cache", {})

    @property
    def key(self) -> str:
        """The constraint's name in logs, state dicts and records (default ``<kind>_<target>``)."""
        return self.name or f"{type(self).__name__.lower()}_{self.target.name}"

    def violation(self, values: torch.Tensor, slack: torch.Tensor | None = None) -> torch.Tensor:
        """Map target values to the violation handed to the formulation (≤ 0 or = 0 when satisfied)."""
        raise NotImplementedError

    def check_size(self, size: int) -> None:
        """Refuse a per-entry right-hand side whose length is not the target's ``L`` (= ``size``)."""
        for field_name in ("value", "bound", "lower"):
            expected = rhs_size(getattr(self, field_name, None))
            if expected is not None and expected != size:
                raise ValueError(f"{self!r}: '{field_name}' has {expected} entries but the target "
                                 f"{self.target.name!r} has {size}; give one number, or one per entry")

    def _rhs(self, rhs: RightHandSide, like: torch.Tensor) -> torch.Tensor | float:
        """The right-hand side on ``like``'s device and dtype (built once per device and dtype)."""
        if isinstance(rhs, float):
            return rhs
        key = (id(rhs), like.device, like.dtype)
        cached = self._cache.get(key)
        if cached is None:
            cached = self._cache[key] = rhs_tensor(rhs, like)
        return cached

    def _fields_repr(self) -> list[str]:
        name = self.target.name
        return [f"target={name}" if name.isidentifier() else f"target={name!r}"]

    def __repr__(self) -> str:
        parts = self._fields_repr()
        if self.name is not None:
            parts.append(f"name={self.name!r}")
        return f"{type(self).__name__}({', '.join(parts)})"


@dataclass(frozen=True, eq=True, repr=False)
class Equality(Constraint):
    """h(θ) = d, element-wise (ACE problem (PI) with h = γ, d = 0).

    Args:
        target: The quantity h.
        value: The right-hand side d: a finite number of any sign, or one number per entry
            (default: :obj:`0.0`).

    Examples:
        >>> Equality("gammas")
        Equality(target=gammas)
        >>> Equality("gammas", value=[0.5, -1.0])
        Equality(target=gammas, value=(0.5, -1.0))
    """

    value: RightHandSide = 0.0

    is_equality = True

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "value", check_rhs(self.value, "value", "Equality"))

    def violation(self, values: torch.Tensor, slack: torch.Tensor | None = None) -> torch.Tensor:
        if self.value == 0.0:
            return values
        return values - self._rhs(self.value, values)

    def _fields_repr(self) -> list[str]:
        return [*super()._fields_repr(), *([f"value={self.value!r}"] if self.value != 0.0 else [])]


@dataclass(frozen=True, eq=True, repr=False)
class Inequality(Constraint):
    """g(θ) ≤ b, a ≤ g(θ), or a ≤ g(θ) ≤ b, element-wise.

    Each side is a finite number of any sign or one number per entry. With only ``lower`` the
    violation is a − g; with both sides it is the 2L-vector [g − b, a − g], with one multiplier per
    side (μ_upper first, then μ_lower; the net pull on g is μ_upper − μ_lower).

    Args:
        target: The quantity g.
        bound: The upper bound b (default: :obj:`0.0` when ``lower`` is not given, else none).
        lower: The lower bound a (default: none).

    Raises:
        ValueError: If a side is not finite, or ``lower`` exceeds ``bound`` somewhere.

    Examples:
        >>> Inequality("gammas", bound=0.1)
        Inequality(target=gammas, bound=0.1)
        >>> Inequality("gammas", lower=-1.0, bound=1.0)
        Inequality(target=gammas, bound=1.0, lower=-1.0)
    """

    bound: RightHandSide | None = None
    lower: RightHandSide | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.bound is None and self.lower is None:
            object.__setattr__(self, "bound", 0.0)
        for field_name in ("bound", "lower"):
            if getattr(self, field_name) is not None:
                object.__setattr__(self, field_name, check_rhs(getattr(self, field_name), field_name, "Inequality"))
        if self.bound is not None and self.lower is not None:
            self._check_order()

    def _check_order(self) -> None:
        lower, upper = self.lower, self.bound
        sizes = {n for n in (rhs_size(lower), rhs_size(upper)) if n is not None}
        if len(sizes) > 1:
            raise ValueError(f"Inequality: expected 'lower' and 'bound' to have the same number of entries "
                             f"(got {len(lower)} and {len(upper)})")
        n = sizes.pop() if sizes else 1
        lows = lower if isinstance(lower, tuple) else (lower,) * n
        highs = upper if isinstance(upper, tuple) else (upper,) * n
        for i, (a, b) in enumerate(zip(lows, highs, strict=True)):
            if a > b:
                raise ValueError(f"Inequality: expected 'lower' ≤ 'bound' (got lower {a} > bound {b} at entry {i})")

    def violation(self, values: torch.Tensor, slack: torch.Tensor | None = None) -> torch.Tensor:
        parts = []
        if self.bound is not None:
            parts.append(values - self._rhs(self.bound, values) if self.bound != 0.0 else values)
        if self.lower is not None:
            parts.append(self._rhs(self.lower, values) - values)
        return parts[0] if len(parts) == 1 else torch.cat(parts)

    def _fields_repr(self) -> list[str]:
        parts = super()._fields_repr()
        if self.bound is not None:
            parts.append(f"bound={self.bound!r}")
        if self.lower is not None:
            parts.append(f"lower={self.lower!r}")
        return parts


@dataclass(frozen=True, eq=True, repr=False)
class Resilient(Constraint):
    """|h(θ)| ≤ u with a learnable slack u ≥ 0 that costs ρ/2 ‖u‖² (ACE problem (PII)).

    At a KKT point u* = λ*/ρ.

    Args:
        target: The quantity h (e.g. the γ vector).
        rho: Slack cost ρ > 0 (ACE uses 1).
        slack_init: Initial slack u⁽⁰⁾ ≥ 0 (ACE leaves it unstated; 0 by default).

    Examples:
        >>> Resilient("gammas", rho=1.0)
        Resilient(target=gammas, rho=1.0)
    """

    rho: float = 1.0
    slack_init: float = 0.0

    has_slack = True

    def __post_init__(self) -> None:
        super().__post_init__()
        rho = check_finite_number(self.rho, "rho", "Resilient", positive=True, allow_zero=False)
        init = check_finite_number(self.slack_init, "slack_init", "Resilient", positive=True, allow_zero=True)
        object.__setattr__(self, "rho", rho)
        object.__setattr__(self, "slack_init", init)

    def violation(self, values: torch.Tensor, slack: torch.Tensor | None = None) -> torch.Tensor:
        if slack is None:
            raise ValueError(f"{self!r}: a resilient constraint needs its slack tensor")
        return values.abs() - slack

    def _fields_repr(self) -> list[str]:
        parts = [*super()._fields_repr(), f"rho={self.rho!r}"]
        if self.slack_init != 0.0:
            parts.append(f"slack_init={self.slack_init!r}")
        return parts


@dataclass(frozen=True, eq=True, repr=False)
class Penalty(Constraint):
    """A soft term w · Σ_i p_i(θ) added to the objective; never gets a multiplier.

    This is how CR's regulariser is used (weight 0.01 on the Lie-derivative and ‖Wx‖ norms).

    With ``every=k`` the target is evaluated only on the steps whose index is a multiple of k, and
    there the term is k · w · Σ_i p_i(θ); the other steps neither evaluate nor add it. Over k steps the
    mean pull equals the every-step penalty's (exactly so while p changes little within k steps), for
    1/k of the target's cost, at the price of a k× larger kick once in k steps. ``every=1`` is the
    every-step penalty, bit for bit. Logs show the last computed values on the skipped steps.

    Args:
        target: The quantity p (one value per layer).
        weight: The fixed weight w ≥ 0.
        every: Evaluate the penalty every ``every`` steps, a positive integer (default: :obj:`1`).

    Examples:
        >>> Penalty("gammas", weight=0.01)
        Penalty(target=gammas, weight=0.01)
        >>> Penalty("gammas", weight=0.01, every=4)
        Penalty(target=gammas, weight=0.01, every=4)
    """

    weight: float = 1.0
    every: int = 1

    is_penalty = True

    def __post_init__(self) -> None:
        super().__post_init__()
        value = check_finite_number(self.weight, "weight", "Penalty", positive=True, allow_zero=True)
        object.__setattr__(self, "weight", value)
        if isinstance(self.every, bool) or not isinstance(self.every, numbers.Integral):
            raise TypeError(f"Penalty: expected 'every' to be a positive integer (got {type(self.every).__name__} "
                            f"{self.every!r})")
        if self.every < 1:
            raise ValueError(f"Penalty: expected 'every' to be a positive integer, the number of steps between "
                             f"evaluations (got {self.every})")
        object.__setattr__(self, "every", int(self.every))

    def violation(self, values: torch.Tensor, slack: torch.Tensor | None = None) -> torch.Tensor:
        return values

    def _fields_repr(self) -> list[str]:
        every = [f"every={self.every!r}"] if self.every != 1 else []
        return [*super()._fields_repr(), f"weight={self.weight!r}", *every]


_KINDS: dict[str, type[Constraint]] = {
    "Equality": Equality,
    "Inequality": Inequality,
    "Resilient": Resilient,
    "Penalty": Penalty,
}


def _value(node: Any, key: str, text: str, bare: tuple[str, ...]) -> Any:
    """A keyword's value: a literal, or for the keywords in ``bare`` a bare name read as a string."""
    import ast

    if isinstance(node, ast.Name) and key in bare:
        return node.id
    try:
        return ast.literal_eval(node)
    except ValueError:
        shown = ast.unparse(node)
        raise ValueError(f"Unable to parse constraint {text!r}: {key}={shown} is not a number, a list of numbers or "
                         f"a quoted string; to give text, quote it: {key}={shown!r}") from None


def parse_call(text: str, kinds: Any, *, bare: tuple[str, ...] = ("target", "name"),
               positional: str | None = "target") -> tuple[str, dict[str, Any]]:
    """Split a constraint string ``Kind(key=value, ...)`` into its kind and its keyword arguments.

    Values are Python literals; the keywords in ``bare`` also take a bare name as a string
    (``target=gammas``, ``name=first_l1``), and an import path ``package.module:attribute`` is quoted
    for any keyword. ``positional`` names the one argument that may come first without its keyword
    (``None``: none may). :func:`parse` and the problem files' ``LieDerivative(...)`` both read strings here.

    Raises:
        ValueError: If the text is not such a call, or a value is not a literal (saying how to quote it).

    Examples:
        >>> parse_call("Inequality(target=norms, bound=1.5, name=first_l1)", ["Inequality"])
        ('Inequality', {'target': 'norms', 'bound': 1.5, 'name': 'first_l1'})
    """
    import ast

    try:
        call = ast.parse(quote_import_paths(text.strip()), mode="eval").body
    except SyntaxError as err:
        raise ValueError(f"Unable to parse constraint {text!r}: {err.msg}") from None
    if not isinstance(call, ast.Call) or not isinstance(call.func, ast.Name) or call.func.id not in kinds:
        raise ValueError(f"Unable to parse constraint {text!r}: expected one of {', '.join(kinds)}(...)")
    if any(kw.arg is None for kw in call.keywords) or any(isinstance(a, ast.Starred) for a in call.args):
        raise ValueError(f"Unable to parse constraint {text!r}: expected key=value arguments (no * or **)")
    kwargs = {kw.arg: _value(kw.value, kw.arg, text, bare) for kw in call.keywords}
    positional_args = [*call.args]
    if positional_args and positional is not None:
        if positional in kwargs:
            raise ValueError(f"Unable to parse constraint {text!r}: '{positional}' is given twice")
        kwargs[positional] = _value(positional_args.pop(0), positional, text, bare)
    if positional_args:
        but = f"every field but the {positional}" if positional is not None else "every field"
        raise ValueError(f"Unable to parse constraint {text!r}: give {but} by name")
    return call.func.id, kwargs


def parse(text: str) -> Constraint:
    """Parse the repr of a constraint back into the constraint (targets must be registered).

    ``target`` and ``name`` may be bare names (``name=first_l1``); other text values are quoted.

    Examples:
        >>> parse("Resilient(target=gammas, rho=1.0)")
        Resilient(target=gammas, rho=1.0)
        >>> parse("Equality(target=gammas, name=tied)").key
        'tied'
    """
    kind, kwargs = parse_call(text, _KINDS)
    return _KINDS[kind](**kwargs)
