"""Strategies: named ways of solving one problem file, each a formulation plus what else changes.

A problem file declares one problem; ``strategy:`` (or ``ceq run --strategy``) picks how it is solved.
Each strategy is a :class:`Strategy` record in one registry, read by the problem-file checker and by
the builder alike:

================  ==========================  ===============================================================
strategy          formulation                 what changes
================  ==========================  ===============================================================
``custom``        as written                  nothing (the file's ``formulation``)
``vanilla``       ``none``                    model projected *before* training (f_neq removed), no constraints
``ace_equality``  ``lagrangian``              ACE Alg. 1: γ → 0 by dual ascent
``ace_augmented`` ``augmented_lagrangian``    γ = 0 with a c/2‖γ‖² term that damps the dual oscillation
``ace_resilient`` ``resilient``               ACE Alg. 2: |γ| ≤ u, learned slack
``cr``            ``schedule``                CR: γ on a triangle over the epochs, plus the file's penalties
``augmentation``  ``none``                    non-equivariant (γ free), random rotations of training batches
``penalty``       ``penalty``                 fixed quadratic penalty on γ
================  ==========================  ===============================================================

The file's ``formulation.options`` apply when ``formulation.name`` is the strategy's formulation; a
formulation's ``training_defaults`` (the schedule's ``epochs``) are filled from the file's ``training``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from constrained_eq.core.formulations import FORMULATIONS

if TYPE_CHECKING:  # the sections' module imports torch; a strategy's name is checked without it
    from constrained_eq.run.problem_model import FormulationSection, TrainingSection

__all__ = ["Strategy", "STRATEGIES", "register_strategy", "get_strategy", "strategy_names", "formulation_for"]


@dataclass(frozen=True)
class Strategy:
    """One way of solving a problem file.

    Attributes:
        name: The name in ``strategy:``.
        formulation: The registered formulation it uses, or ``None`` for the file's own (``custom``).
        options: Default options of that formulation (the file's ``formulation.options`` override them
            when the file names the same formulation).
        drops_constraints: The model is projected before training and the constraints dropped (``vanilla``).
        augments: Training batches get a random group element (needs a task with ``augment()``).
        keeps_lie_penalty: CR's fixed-weight ``LieDerivative`` penalty of the file applies.
        deploys_projection: Selection and reports judge the projected model f_{θ,0} of a relaxed model.
        doc: One line for tables and ``--help``.
    """

    name: str
    formulation: str | None
    options: Mapping[str, Any] = field(default_factory=dict)
    drops_constraints: bool = False
    augments: bool = False
    keeps_lie_penalty: bool = False
    deploys_projection: bool = False
    doc: str = ""


_STRATEGIES: dict[str, Strategy] = {}


def register_strategy(strategy: Strategy) -> Strategy:
    """Make ``strategy`` known by its name (replacing one of the same name). Returns it.

    Raises:
        TypeError: If ``strategy`` is not a :class:`Strategy`.
        ValueError: If its name is not an identifier.
    """
    if not isinstance(strategy, Strategy):
        raise TypeError(f"Expected a Strategy (got {type(strategy).__name__})")
    if not strategy.name.isidentifier():
        raise ValueError(f"Expected the strategy's name to be a Python identifier (got {strategy.name!r})")
    _STRATEGIES[strategy.name] = strategy
    return strategy


def strategy_names() -> list[str]:
    """The registered strategy names."""
    return list(_STRATEGIES)


def get_strategy(name: str) -> Strategy:
    """The strategy registered as ``name``.

    Raises:
        ValueError: If the name is unknown (the message lists the choices).
    """
    if name not in _STRATEGIES:
        choices = ", ".join(repr(k) for k in _STRATEGIES)
        raise ValueError(f"Expected 'strategy' to be one of {choices} (got {name!r})")
    return _STRATEGIES[name]


class _FormulationByStrategy(Mapping):
    """A live read-only view: strategy name → its formulation name (``None``: the file's own)."""

    def __getitem__(self, name: str) -> str | None:
        if name not in _STRATEGIES:
            raise KeyError(name)
        return _STRATEGIES[name].formulation

    def __iter__(self) -> Iterator[str]:
        return iter(list(_STRATEGIES))

    def __len__(self) -> int:
        return len(_STRATEGIES)

    def __repr__(self) -> str:
        return repr(dict(self))


STRATEGIES: Mapping[str, str | None] = _FormulationByStrategy()


def formulation_for(strategy: str, formulation: FormulationSection, training: TrainingSection
                    ) -> tuple[str, dict[str, Any]]:
    """The formulation name and options that ``strategy`` runs for a file's ``formulation`` section.

    The section's options apply when it names the strategy's formulation. The formulation's
    ``training_defaults`` are filled from the ``training`` section.

    Examples:
        >>> from constrained_eq.run.problem_model import FormulationSection, TrainingSection
        >>> formulation_for("cr", FormulationSection("lagrangian"), TrainingSection(epochs=20))
        ('schedule', {'epochs': 20})
    """
    chosen = get_strategy(strategy)
    name = chosen.formulation or formulation.name
    options = {**chosen.options, **(formulation.options if name == formulation.name else {})}
    cls = FORMULATIONS.get(name)
    for option, key in (cls.training_defaults.items() if cls is not None else ()):
        options.setdefault(option, getattr(training, key))
    return name, options


for _strategy in (
    Strategy("custom", None, keeps_lie_penalty=True, deploys_projection=True,
             doc="the file's formulation as written"),
    Strategy("vanilla", "none", drops_constraints=True,
             doc="model projected before training (f_neq removed), no constraints"),
    Strategy("ace_equality", "lagrangian", deploys_projection=True, doc="ACE Alg. 1: γ → 0 by dual ascent"),
    Strategy("ace_augmented", "augmented_lagrangian", deploys_projection=True,
             doc="γ = 0 with the damping of c/2‖γ‖²"),
    Strategy("ace_resilient", "resilient", doc="ACE Alg. 2: |γ| ≤ u, learned slack"),
    Strategy("cr", "schedule", keeps_lie_penalty=True, deploys_projection=True,
             doc="CR: γ on a triangle over the epochs, plus the file's penalties"),
    Strategy("augmentation", "none", augments=True,
             doc="non-equivariant (γ free), random rotations of the training batches"),
    Strategy("penalty", "penalty", deploys_projection=True, doc="fixed quadratic penalty on γ"),
):
    register_strategy(_strategy)
del _strategy
