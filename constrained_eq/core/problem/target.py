"""The :class:`Target` a constraint acts on, and the registry of targets by name.

A target maps ``(model, batch, output)`` (or the model alone) to a vector of ``L`` quantities; the
constraint kinds of :mod:`constrained_eq.core.problem.constraints` say what relation it must satisfy. A target
is given as a :class:`Target`, a registered name (:func:`register_target`), a callable, or an import
path ``package.module:attribute`` (:func:`load_target`).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import torch

from constrained_eq._utils.import_path import ImportPathError, check_call, describe_kind, load_object

__all__ = ["READS", "Target", "register_target", "registered_targets", "as_target", "load_target"]

_TARGETS: dict[str, Target] = {}


READS = ("parameters", "batch", "output")


def _positional(fn: Callable) -> tuple[int, int]:
    """(required, accepted) positional parameters of ``fn``; ``accepted`` is 3 with ``*args``."""
    try:
        params = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):  # a builtin or a callable without a signature: assume it reads everything
        return 3, 3
    if any(p.kind is p.VAR_POSITIONAL for p in params):
        return 3, 3
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return sum(p.default is p.empty for p in positional), min(len(positional), 3)


def _reads(fn: Callable, name: str, reads: Any, needs_batch: bool | None) -> tuple[str, ...]:
    """What a target reads: given, or from ``needs_batch``, or inferred from ``fn``'s required parameters."""
    if reads is not None:
        reads = (reads,) if isinstance(reads, str) else tuple(reads)
        unknown = [r for r in reads if r not in READS]
        if unknown or not reads:
            raise ValueError(f"Target {name!r}: expected 'reads' to list some of {', '.join(map(repr, READS))} "
                             f"(got {reads!r})")
        if needs_batch is not None and needs_batch != any(r != "parameters" for r in reads):
            raise ValueError(f"Target {name!r}: 'needs_batch={needs_batch}' contradicts 'reads={reads!r}'")
        return tuple(r for r in READS if r in reads)
    if needs_batch is not None:
        return READS if needs_batch else ("parameters",)
    required, _ = _positional(fn)
    return READS[:max(1, min(required, 3))]


class Target:
    r"""A named quantity a constraint acts on: ``target(model, batch, output) -> Tensor (L,)``.

    A target declares what it reads — ``"parameters"`` (the model alone), ``"batch"``, ``"output"`` —
    so that a parameter-only target (a weight norm, γ) is evaluated without any data: the ``Solver``
    sizes it without an example batch and validation measures it once per evaluation, not per batch.
    Undeclared, it is inferred from ``fn``'s required positional parameters: ``fn(model)`` reads the
    parameters, ``fn(model, batch)`` the batch too, ``fn(model, batch, output)`` everything
    (parameters with a default, ``batch=None``, are not required and not read).

    Over a data split a batch-reading target is reduced as its constraint is defined: by default the
    batch-size-weighted mean :math:`\bar g = \sum_b n_b g_b / \sum_b n_b` (an expectation);
    a rate or a ratio of expectations gives ``totals(model, batch, output) -> Tensor (K,)`` (sums that
    add up over batches, e.g. numerator and denominator per group) and ``from_totals(sums) -> (L,)``.

    Args:
        fn: Callable returning a 1-D floating tensor of ``L`` values; called with as many of
            ``(model, batch, output)`` as it accepts.
        name: Name used in reprs, logs and problem files.
        reads: What ``fn`` reads, among ``"parameters"``, ``"batch"``, ``"output"`` (default: inferred).
        needs_batch: Older spelling: ``True`` is ``reads=("parameters", "batch", "output")``, ``False`` is
            ``reads=("parameters",)`` (default: inferred).
        variables: Optional callable ``variables(model) -> list[Parameter]`` naming the parameters
            that the constraint acts on directly (ACE's γ). The ``Solver`` steps them with their own
            optimizer (plain SGD by default, as ACE's algorithms do).
        prepare: Optional callable ``prepare(model)`` run once when a solver is built, before any
            forward (e.g. switching on the input recording a penalty reads).
        from_variables: Optional callable ``from_variables(params) -> Tensor (L,)`` giving the same values
            as ``fn`` from the parameters ``variables(model)`` names (for γ: ``torch.stack``). A solver
            finds those parameters once, when it is built, and then evaluates the target from them,
            without searching the model at every step, before the model's forward (so that its gradient
            is added last, in place).
        totals: Optional ``totals(model, batch, output) -> Tensor (K,)``: per-batch sums whose total over a
            split defines the target there (with ``from_totals``).
        from_totals: ``from_totals(sums (K,)) -> Tensor (L,)``: the target's value over a split.
        exact: Optional ``exact(model) -> Tensor (L,)`` for a parameter-only target whose ``fn`` is an estimate
            (``spectral_norms`` runs one power-iteration step per call): the exact value, measured once when
            the deployed model is certified (:mod:`constrained_eq.training.certificate`). ``None``: ``fn`` is exact.

    Shapes:
        - **output of** ``fn``: ``(L,)``
    """

    def __init__(
        self,
        fn: Callable[..., torch.Tensor],
        name: str,
        *,
        reads: Any = None,
        needs_batch: bool | None = None,
        variables: Callable[[torch.nn.Module], list[torch.nn.Parameter]] | None = None,
        prepare: Callable[[torch.nn.Module], None] | None = None,
        from_variables: Callable[[list[torch.nn.Parameter]], torch.Tensor] | None = None,
        totals: Callable[..., torch.Tensor] | None = None,
        from_totals: Callable[[torch.Tensor], torch.Tensor] | None = None,
        exact: Callable[[torch.nn.Module], torch.Tensor] | None = None,
    ) -> None:
        if not callable(fn):
            raise TypeError(f"Expected 'fn' to be callable (got {type(fn).__name__})")
        if not isinstance(name, str) or not name.strip():
            raise ValueError(f"Expected 'name' to be a non-empty string (got {name!r})")
        self.fn = fn
        self.name = name
        self.reads = _reads(fn, name, reads, needs_batch)
        self._accepts = _positional(fn)[1]
        self.variables = variables
        self.prepare = prepare
        if from_variables is not None and variables is None:
            raise ValueError(f"Target {name!r}: 'from_variables' needs 'variables' (the parameters it reads)")
        self.from_variables = from_variables
        if (totals is None) != (from_totals is None):
            raise ValueError(f"Target {name!r}: 'totals' and 'from_totals' go together")
        self.totals = totals
        self.from_totals = from_totals
        if exact is not None and (not callable(exact) or self.needs_batch):
            raise ValueError(f"Target {name!r}: 'exact' is a callable exact(model) of a parameter-only target "
                             f"(got {exact!r} for a target reading {self.reads})")
        self.exact = exact

    @property
    def needs_batch(self) -> bool:
        """Whether the target reads the batch or the model's output (so it needs data to be evaluated)."""
        return self.reads != ("parameters",)

    def __call__(self, model: torch.nn.Module, batch: Any = None, output: Any = None) -> torch.Tensor:
        return self.fn(*(model, batch, output)[:max(self._accepts, 1)])

    def __repr__(self) -> str:
        return self.name

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Target) and other.name == self.name and other.fn is self.fn

    def __hash__(self) -> int:
        return hash(("Target", self.name))


def register_target(target: Target) -> Target:
    """Make ``target`` known by name, so that problem files and :func:`parse` can refer to it.

    Raises:
        ValueError: If a different target is already registered under the same name.
    """
    if not isinstance(target, Target):
        raise TypeError(f"Expected 'target' to be a Target (got {type(target).__name__})")
    existing = _TARGETS.get(target.name)
    if existing is not None and existing is not target:
        raise ValueError(f"A different target is already registered as {target.name!r}")
    _TARGETS[target.name] = target
    return target


def registered_targets() -> dict[str, Target]:
    """Return the registered targets by name (a copy)."""
    return dict(_TARGETS)


def as_target(target: Any, field_name: str = "target") -> Target:
    """A :class:`Target` from a Target, a registered name, an import path or a callable."""
    if isinstance(target, Target):
        return target
    if isinstance(target, str) and ":" in target:  # "package.module:attribute", the user's own code
        return load_target(target)
    if isinstance(target, str):
        if target not in _TARGETS:
            choices = ", ".join(repr(k) for k in sorted(_TARGETS)) or "(none registered)"
            raise ValueError(f"Expected '{field_name}' to be one of {choices} (got {target!r})")
        return _TARGETS[target]
    if callable(target):
        name = getattr(target, "__name__", "target")
        return Target(target, name if name.isidentifier() else "target")
    raise TypeError(
        f"Expected '{field_name}' to be a Target, a registered target name or a callable "
        f"(model, batch, output) -> Tensor (got {type(target).__name__})"
    )


def load_target(path: str) -> Any:
    """Import a constraint target: a :class:`Target` or a function ``fn(model)`` or ``fn(model, batch, output)``.

    A function becomes ``Target(fn, name=<attribute>)``, as in Python: called with as many of
    ``(model, batch, output)`` as it takes, so ``fn(model)`` reads the parameters alone (no batch needed to
    size or measure it) and ``fn(model, batch, output)`` reads the batch too (the solver evaluates it on an
    example batch to learn its size ``L``).

    Raises:
        ImportPathError: If the attribute is neither, or the function cannot be called that way.
    """
    obj = load_object(path, "constraint target")
    if isinstance(obj, Target):
        return obj
    if not callable(obj) or isinstance(obj, type):
        raise ImportPathError(f"Expected the constraint target {path!r} to be a Target or a function "
                              f"fn(model) or fn(model, batch, output) -> Tensor (L,) (got {describe_kind(obj)})")
    check_call(obj, path, "constraint target", *(None, None, None)[:max(_positional(obj)[1], 1)])
    name = path.rpartition(":")[2].rpartition(".")[2]
    return Target(obj, name)
