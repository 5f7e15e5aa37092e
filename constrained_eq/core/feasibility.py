"""Is a constraint infeasible? A verdict from the dual dynamics, accumulated on the device.

Under gradient ascent a multiplier moves by η_d times the violation at every dual step,

.. math::
    \\lambda_{t+1} = [\\lambda_t + \\eta_d\\, v_t]_+ \\quad (\\text{no projection for equalities}),

so at a feasible KKT point the violation v_t averages to 0 and λ settles. When the constraints
cannot all hold, the primal iterate settles where the pulls balance, the violation stays bounded
away from 0 and λ grows *linearly* at the matching rate η_d v̄ (for two inconsistent equalities,
the complementary pattern: violations of opposite signs, multipliers drifting apart). The monitor
compares two consecutive windows of steps (lengths doubling from ``min_window`` to ``max_window``)
entry by entry:

* ``likely infeasible`` — |v̄| > ``tolerance`` in both windows with one sign, v̄ steady (relative
  change ≤ ``steady_violation``) while λ moves in the direction of v̄ at a steady rate (relative
  change ≤ ``steady_rate``) that matches η_d v̄ when the dual optimizer is the default SGD;
* ``feasible`` — the last window's mean violation is within ``tolerance`` (≤ it for inequalities);
* ``undecided`` — anything else (still converging, oscillating, or too few steps).

A feasible problem whose multipliers are still far below their KKT values looks the same for a
while: the primal has not yet felt λ, so v̄ stays put while λ grows linearly. The steadiness asked
of v̄ (2 % between windows) keeps such a false alarm to problems whose λ is still a few percent of
λ* after the first two windows (1,536 steps by default); the verdict returns to ``undecided`` as
soon as v̄ moves. Hence "likely".

A constraint is ``likely infeasible`` when one of its entries is, ``feasible`` when all are.
The statistics are running sums of device tensors: a step adds the violation (no host read);
:meth:`FeasibilityMonitor.verdicts` reads them back when asked.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

__all__ = ["FeasibilityMonitor", "Verdict", "FEASIBLE", "INFEASIBLE", "UNDECIDED", "describe", "warn_new_infeasible"]

FEASIBLE, INFEASIBLE, UNDECIDED = "feasible", "likely infeasible", "undecided"


@dataclass
class Verdict:
    """The verdict on one constraint, with its evidence.

    Attributes:
        verdict: ``"feasible"``, ``"likely infeasible"`` or ``"undecided"``.
        evidence: One sentence a user can read.
        steps: Steps observed so far.
        entries: The entries judged infeasible (empty unless ``verdict == "likely infeasible"``).
        violation: Mean violation per entry over the last window.
        rate: λ's change per step over the last window (empty without a multiplier).
        expected_rate: η_d · v̄ / dual_every per entry, when the dual step is plain SGD with ``dual_lr``.
    """

    verdict: str
    evidence: str
    steps: int
    entries: list[int] = field(default_factory=list)
    violation: list[float] = field(default_factory=list)
    rate: list[float] = field(default_factory=list)
    expected_rate: list[float] | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"verdict": self.verdict, "evidence": self.evidence, "steps": self.steps, "entries": self.entries}


@dataclass
class _Window:
    """``length`` steps from ``start_step``; λ moved from ``multiplier_start`` over ``rate_steps`` of them."""

    start_step: int
    length: int
    violation_sum: torch.Tensor
    multiplier_start: torch.Tensor | None
    rate_steps: int
    multiplier_end: torch.Tensor | None = None


class FeasibilityMonitor:
    """Running per-constraint statistics of violations and multipliers.

    Args:
        keys: The constraints to watch and whether each is an equality, ``{name: is_equality}``.
        expected_rate: ``{name: η_d / dual_every}`` for multipliers stepped by plain SGD, else absent.
        tolerance: Violations within this are "met" (default: :obj:`1e-3`).
        steady_violation: Largest relative change of v̄ between windows that counts as steady
            (default: :obj:`0.02`).
        steady_rate: Largest relative change of λ's rate between windows, and from η_d v̄, that counts
            as steady and matching (default: :obj:`0.1`).
        min_window: Length of the first window in steps (default: :obj:`512`).
        max_window: Longest window (default: :obj:`2048`).
    """

    def __init__(self, keys: dict[str, bool], expected_rate: dict[str, float] | None = None, *,
                 tolerance: float = 1e-3, steady_violation: float = 0.02, steady_rate: float = 0.1,
                 min_window: int = 512, max_window: int = 2048) -> None:
        self.keys = dict(keys)
        self.expected_rate = dict(expected_rate or {})
        self.tolerance = float(tolerance)
        self.steady_violation, self.steady_rate = float(steady_violation), float(steady_rate)
        self.min_window, self.max_window = int(min_window), int(max_window)
        self.steps = 0
        self.current: dict[str, _Window] = {}
        self.done: dict[str, list[_Window]] = {k: [] for k in self.keys}  # the last two closed windows
        self.closed: dict[str, int] = {k: 0 for k in self.keys}

    def _length(self, index: int) -> int:
        return min(self.min_window * 2 ** index, self.max_window)

    @torch.no_grad()
    def update(self, violations: dict[str, torch.Tensor], multipliers: dict[str, torch.Tensor]) -> None:
        """Add one step's violations (detached); close a window at its end. No host read."""
        for key in self.keys:
            violation = violations.get(key)
            if violation is None:
                continue
            lam = multipliers.get(key)
            window = self.current.get(key)
            if window is None:  # the first window opens after its first step: λ's change counts one step less
                length = self._length(0)
                window = self.current[key] = _Window(self.steps, length, torch.zeros_like(violation),
                                                     None if lam is None else lam.detach().clone(), length - 1)
            window.violation_sum.add_(violation)
            if self.steps + 1 - window.start_step >= window.length:
                window.multiplier_end = None if lam is None else lam.detach().clone()
                self.done[key] = [*self.done[key][-1:], window]
                self.closed[key] += 1
                length = self._length(self.closed[key])
                self.current[key] = _Window(self.steps + 1, length, torch.zeros_like(violation),
                                            window.multiplier_end, length)
        self.steps += 1

    def verdicts(self) -> dict[str, Verdict]:
        """The verdict per constraint (reads the statistics back: one host sync)."""
        return {key: self._judge(key) for key in self.keys}

    def _judge(self, key: str) -> Verdict:
        windows = self.done[key]
        if len(windows) < 2:
            need = sum(self._length(i) for i in range(2))
            return Verdict(UNDECIDED, f"{self.steps} steps observed; a verdict needs {need}", self.steps)
        older, newer = windows
        v_old = (older.violation_sum / older.length).double().cpu()
        v_new = (newer.violation_sum / newer.length).double().cpu()
        has_multiplier = newer.multiplier_start is not None
        if has_multiplier:
            r_old = ((older.multiplier_end - older.multiplier_start) / max(older.rate_steps, 1)).double().cpu()
            r_new = ((newer.multiplier_end - newer.multiplier_start) / max(newer.rate_steps, 1)).double().cpu()
        expected = self.expected_rate.get(key)
        equality = self.keys[key]
        met = (v_new.abs() if equality else v_new) <= self.tolerance
        sign = torch.sign(v_new)
        flagged = (v_new.abs() > self.tolerance) & (torch.sign(v_old) == sign) & (equality | (sign > 0))
        flagged &= (v_new - v_old).abs() <= self.steady_violation * v_new.abs()
        if has_multiplier:
            steady = (r_new - r_old).abs() <= self.steady_rate * r_new.abs()
            flagged &= (sign * r_new > 0) & (sign * r_old > 0) & steady
            if expected is not None:
                flagged &= (r_new - expected * v_new).abs() <= self.steady_rate * (expected * v_new).abs()
        else:
            flagged &= False  # without a multiplier there is no dual evidence
        violation = v_new.tolist()
        rate = r_new.tolist() if has_multiplier else []
        expected_rate = (expected * v_new).tolist() if expected is not None and has_multiplier else None
        if bool(flagged.any()):
            entries = torch.nonzero(flagged).flatten().tolist()
            return Verdict(INFEASIBLE, _infeasible_evidence(entries, v_old, v_new, rate, expected_rate, newer),
                           self.steps, entries, violation, rate, expected_rate)
        if bool(met.all()):
            worst = float(v_new.abs().max()) if equality else float(v_new.max())
            return Verdict(FEASIBLE, f"mean violation ≤ {self.tolerance:g} over the last {newer.length} steps "
                                     f"(largest {worst:.3g})", self.steps, [], violation, rate, expected_rate)
        worst = int(torch.argmax(v_new.abs() if equality else v_new))
        return Verdict(UNDECIDED, f"entry {worst} still has mean violation {violation[worst]:.3g} over the last "
                                  f"{newer.length} steps, without the steady pattern of an infeasible constraint",
                       self.steps, [], violation, rate, expected_rate)

    def state_dict(self) -> dict[str, Any]:
        def pack(w: _Window) -> dict[str, Any]:
            return {"start_step": w.start_step, "length": w.length, "violation_sum": w.violation_sum,
                    "multiplier_start": w.multiplier_start, "rate_steps": w.rate_steps,
                    "multiplier_end": w.multiplier_end}

        return {"steps": self.steps, "closed": dict(self.closed),
                "current": {k: pack(w) for k, w in self.current.items()},
                "done": {k: [pack(w) for w in ws] for k, ws in self.done.items()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.steps = int(state["steps"])
        self.closed = {k: int(state["closed"].get(k, 0)) for k in self.keys}
        self.current = {k: _Window(**w) for k, w in state["current"].items() if k in self.keys}
        self.done = {k: [_Window(**w) for w in state["done"].get(k, [])] for k in self.keys}


def _infeasible_evidence(entries: list[int], v_old: torch.Tensor, v_new: torch.Tensor, rate: list[float],
                         expected_rate: list[float] | None, newer: _Window) -> str:
    i = entries[0]
    which = f"entry {i}" if len(entries) == 1 else f"entries {entries} (e.g. {i})"
    text = (f"{which}: mean violation {float(v_new[i]):.3g} over the last {newer.length} steps (was "
            f"{float(v_old[i]):.3g} the window before) while λ moves {rate[i]:+.3g} per step, steadily")
    if expected_rate is not None:
        text += f" (η_d·violation = {expected_rate[i]:+.3g})"
    return text


def describe(verdicts: Mapping[str, Verdict | Mapping[str, Any]], formulation: str | None = None) -> list[str]:
    """Plain sentences naming each likely-infeasible constraint and what to do about it.

    ``verdicts`` may be :meth:`FeasibilityMonitor.verdicts` or their ``as_dict()`` form (metrics.json).
    """
    def field_of(verdict: Verdict | Mapping[str, Any], name: str) -> Any:
        return verdict[name] if isinstance(verdict, Mapping) else getattr(verdict, name)

    flagged = [k for k, v in verdicts.items() if field_of(v, "verdict") == INFEASIBLE]
    lines = [f"constraint {key!r} is likely infeasible: {field_of(verdicts[key], 'evidence')}." for key in flagged]
    if len(flagged) > 1:
        lines.append(f"constraints {flagged} pull against each other: they cannot all hold at once.")
    if flagged and formulation != "resilient":
        lines.append("Their multipliers will grow for ever (lowering dual_lr only slows that down). Relax them: "
                     "formulation 'resilient' (strategy ace_resilient: a learned slack u ≥ 0 of cost ρ/2‖u‖² per "
                     "entry), a looser bound, or fewer constraints.")
    return lines


def warn_new_infeasible(solver: Any, seen: set[str], where: str) -> dict[str, Verdict]:
    """Read the solver's verdicts (one host sync) and warn once for each newly flagged constraint."""
    verdicts = solver.feasibility()
    new = {k: v for k, v in verdicts.items() if v.verdict == INFEASIBLE and k not in seen}
    if new:
        seen.update(new)
        warnings.warn(f"{where}: " + " ".join(describe(new, getattr(solver.formulation, "name", None))),
                      stacklevel=3)
    return verdicts
