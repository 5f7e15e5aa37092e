r"""Is a constraint met, oscillating or infeasible? Verdicts over the latest steps, accumulated on the device.

Two kinds of evidence are kept, both as running sums of device tensors (a step adds to them in place,
no host read; :meth:`FeasibilityMonitor.verdicts` reads them back when asked):

**The latest steps.** Steps are grouped in blocks of ``block`` steps; the last ``⌈recent / block⌉``
blocks, the open one included, form the *recent span*: it always ends at the latest step and covers
at least ``recent − block + 1`` and at most ``⌈recent / block⌉ · block`` steps (``recent`` when ``block``
divides it; all of them while fewer were taken). Per entry i it holds the mean signed violation
:math:`\bar v_i`, the largest violation :math:`\max_t v^+_{t,i}`, the fraction :math:`p_i` of steps with
:math:`v^+_{t,i} > \tau`, the number :math:`c_i` of steps that crossed the constraint (the state
:math:`[v > \tau] - [v < -\tau]` of an equality, :math:`[v > \tau]` of an inequality, changed from the step
before), and the violation at the last step; :math:`v^+ = |h|` for an equality and :math:`[g - b]_+` for an
inequality. Every verdict names the steps it covers ("the last 1,024 steps (steps 2,560–3,583)").

**The dual dynamics.** Under gradient ascent a multiplier moves by η_d times the violation at every
dual step,

.. math::
    \lambda_{t+1} = [\lambda_t + \eta_d\, v_t]_+ \quad (\text{no projection for equalities}),

so at a feasible KKT point the violation averages to 0 and λ settles. When the constraints cannot all
hold, the primal iterate settles where the pulls balance, the violation stays bounded away from 0 and λ
grows *linearly* at the rate η_d v̄ (for two inconsistent equalities, the complementary pattern:
violations of opposite signs, multipliers drifting apart). Two consecutive closed windows of steps
(lengths doubling from ``min_window`` to ``max_window``) are compared entry by entry.

The rule, per entry (no verdict before two windows have closed, ``undecided``):

* ``likely infeasible`` — in both closed windows |v̄| > τ with one sign, v̄ steady (relative change ≤
  ``steady_violation``) while λ moves in the direction of v̄ at a steady rate (relative change ≤
  ``steady_rate``) that matches η_d v̄ when the dual optimizer is the default SGD; *and* the recent span
  still has a mean violation beyond τ of that sign (a recovery or a sign change ends the verdict);
* ``feasible`` — the entry held (:math:`v^+_t \le \tau`) on all but a fraction
  :math:`p_i \le` ``max_violated_fraction`` (default 1 %) of the recent steps, *and* at the last step;
  the signed mean alone never makes an entry feasible;
* ``oscillating`` — violated on more than ``max_violated_fraction`` of the recent steps, and crossing the
  constraint back and forth: :math:`c_i \ge` ``min_crossings`` (default 4, two swings); the iterate meets
  the constraint at best on average (the signed mean :math:`\bar v_i` is reported beside it);
* ``violated`` — otherwise: violated on more than ``max_violated_fraction`` of the recent steps without
  swinging back (still converging, a late blow-up) and without the steady dual pattern, or violated at the
  last step after holding before.

A constraint is ``likely infeasible`` when one of its entries is, else ``violated`` when one is, else
``oscillating`` when one is, else ``feasible`` (all are).

A feasible problem whose multipliers are still far below their KKT values looks infeasible for a while:
the primal has not yet felt λ, so v̄ stays put while λ grows linearly. The steadiness asked of v̄ (2 %
between windows) keeps such a false alarm to problems whose λ is still a few percent of λ* after the
first two windows (1,536 steps by default); the verdict changes as soon as v̄ moves. Hence "likely".
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

__all__ = ["FeasibilityMonitor", "Verdict", "FEASIBLE", "INFEASIBLE", "UNDECIDED", "OSCILLATING", "VIOLATED",
           "describe", "warn_new_infeasible"]

FEASIBLE, INFEASIBLE, UNDECIDED = "feasible", "likely infeasible", "undecided"
OSCILLATING, VIOLATED = "oscillating", "violated"
_RING = ("sums", "peaks", "counts", "flips")


@dataclass
class Verdict:
    """The verdict on one constraint, with its evidence.

    Attributes:
        verdict: ``"feasible"``, ``"oscillating"``, ``"violated"``, ``"likely infeasible"`` or ``"undecided"``.
        evidence: One sentence a user can read; it names the steps it covers.
        steps: Steps observed so far.
        entries: The entries that decided a verdict other than ``feasible`` (e.g. the infeasible ones).
        violation: Mean signed violation per entry over the recent span.
        rate: λ's change per step over the last closed window (empty without a multiplier).
        expected_rate: η_d · v̄ / dual_every per entry, when the dual step is plain SGD with ``dual_lr``.
        largest: Largest violation ``v⁺`` per entry over the recent span.
        violated_fraction: Fraction of the recent steps on which each entry was violated (``v⁺ > τ``).
        window: ``(first, last)`` step of the recent span (0-based, inclusive), ``None`` before any step.
    """

    verdict: str
    evidence: str
    steps: int
    entries: list[int] = field(default_factory=list)
    violation: list[float] = field(default_factory=list)
    rate: list[float] = field(default_factory=list)
    expected_rate: list[float] | None = None
    largest: list[float] = field(default_factory=list)
    violated_fraction: list[float] = field(default_factory=list)
    window: tuple[int, int] | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"verdict": self.verdict, "evidence": self.evidence, "steps": self.steps, "entries": self.entries,
                "window": list(self.window) if self.window is not None else None, "mean_violation": self.violation,
                "largest_violation": self.largest, "violated_fraction": self.violated_fraction}


@dataclass
class _Window:
    """``length`` steps from ``start_step``; λ moved from ``multiplier_start`` over ``rate_steps`` of them."""

    start_step: int
    length: int
    violation_sum: torch.Tensor
    multiplier_start: torch.Tensor | None
    rate_steps: int
    multiplier_end: torch.Tensor | None = None


def _steps(first: int, last: int) -> str:
    return f"the last {last - first + 1:,} steps (steps {first:,}–{last:,})"


def _percent(fraction: float) -> str:
    return f"{100 * fraction:.3g} %"


class FeasibilityMonitor:
    """Running per-constraint statistics of violations and multipliers (see the module for the rule).

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
        recent: Length of the recent span the verdict speaks of (default: ``2 * min_window``, 1,024).
        block: Granularity of the recent span (default: ``max(1, recent // 16)``, 64).
        max_violated_fraction: Largest fraction of violated recent steps of a ``feasible`` entry
            (default: :obj:`0.01`).
        min_crossings: Fewest changes between held and violated in the recent span of an ``oscillating``
            entry (default: :obj:`4`).
    """

    def __init__(self, keys: dict[str, bool], expected_rate: dict[str, float] | None = None, *,
                 tolerance: float = 1e-3, steady_violation: float = 0.02, steady_rate: float = 0.1,
                 min_window: int = 512, max_window: int = 2048, recent: int | None = None, block: int | None = None,
                 max_violated_fraction: float = 0.01, min_crossings: int = 4) -> None:
        self.keys = dict(keys)
        self.expected_rate = dict(expected_rate or {})
        self.tolerance = float(tolerance)
        self.steady_violation, self.steady_rate = float(steady_violation), float(steady_rate)
        self.min_window, self.max_window = int(min_window), int(max_window)
        self.recent = int(recent) if recent is not None else 2 * self.min_window
        self.block = int(block) if block is not None else max(1, self.recent // 16)
        self.blocks = -(-self.recent // self.block)  # ring of the last ⌈recent / block⌉ blocks, the open one too
        self.max_violated_fraction, self.min_crossings = float(max_violated_fraction), int(min_crossings)
        self.steps = 0
        self.recent_start = 0  # first step held in the ring (later than 0 only after loading an old checkpoint)
        self.current: dict[str, _Window] = {}
        self.done: dict[str, list[_Window]] = {k: [] for k in self.keys}  # the last two closed windows
        self.closed: dict[str, int] = {k: 0 for k in self.keys}
        self.ring: dict[str, dict[str, torch.Tensor]] = {}  # per key: sums, peaks, counts, flips (blocks, L); last

    def _length(self, index: int) -> int:
        return min(self.min_window * 2 ** index, self.max_window)

    @torch.no_grad()
    def update(self, violations: dict[str, torch.Tensor], multipliers: dict[str, torch.Tensor]) -> None:
        """Add one step's violations (detached); close a window or a block at its end. No host read."""
        slot, opens = (self.steps // self.block) % self.blocks, self.steps % self.block == 0
        for key in self.keys:
            violation = violations.get(key)
            if violation is None:
                continue
            violation = violation.detach()
            self._add_recent(key, violation, slot, opens)
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

    def _add_recent(self, key: str, violation: torch.Tensor, slot: int, opens: bool) -> None:
        """In-place device updates of the open block: signed sum, largest v⁺, violated steps, changes; last v⁺."""
        ring = self.ring.get(key)
        if ring is None:
            shape = (self.blocks, *violation.shape)
            ring = self.ring[key] = {name: violation.new_zeros(shape) for name in _RING}
            ring["last"], ring["state"] = torch.zeros_like(violation), torch.zeros_like(violation)
        elif opens:
            for name in _RING:
                ring[name][slot].zero_()
        positive = violation.abs() if self.keys[key] else violation.clamp(min=0.0)
        ring["sums"][slot].add_(violation)
        ring["peaks"][slot].copy_(torch.maximum(ring["peaks"][slot], positive))
        violated = positive > self.tolerance
        state = violated.to(violation.dtype)
        if self.keys[key]:  # an equality crosses from one side to the other
            state = state - (violation < -self.tolerance).to(violation.dtype)
        ring["counts"][slot].add_(violated.to(violation.dtype))
        ring["flips"][slot].add_((state != ring["state"]).to(violation.dtype))
        ring["last"].copy_(positive)
        ring["state"].copy_(state)

    def verdicts(self) -> dict[str, Verdict]:
        """The verdict per constraint (reads the statistics back: one host sync)."""
        return {key: self._judge(key) for key in self.keys}

    def _recent_span(self, key: str) -> tuple[int, int, dict[str, torch.Tensor]] | None:
        """First and last step of the recent span, and its per-entry mean, largest, fraction and last v⁺."""
        ring = self.ring.get(key)
        if ring is None or self.steps == 0:
            return None
        current = (self.steps - 1) // self.block
        first_block = max(0, current - self.blocks + 1, self.recent_start // self.block)
        first = max(first_block * self.block, self.recent_start)
        slots = [b % self.blocks for b in range(first_block, current + 1)]
        count = self.steps - first
        sums = ring["sums"][slots].double().sum(0).cpu()
        stats = {"mean": sums / count, "largest": ring["peaks"][slots].double().amax(0).cpu(),
                 "fraction": ring["counts"][slots].double().sum(0).cpu() / count,
                 "flips": ring["flips"][slots].double().sum(0).cpu(),
                 "last": ring["last"].double().cpu()}
        return first, self.steps - 1, stats

    def _judge(self, key: str) -> Verdict:
        windows = self.done[key]
        span = self._recent_span(key)
        if len(windows) < 2 or span is None:
            need = sum(self._length(i) for i in range(2))
            return Verdict(UNDECIDED, f"{self.steps} steps observed; a verdict needs {need}", self.steps)
        first, last, recent = span
        older, newer = windows
        v_old = (older.violation_sum / older.length).double().cpu()
        v_new = (newer.violation_sum / newer.length).double().cpu()
        has_multiplier = newer.multiplier_start is not None
        if has_multiplier:
            r_old = ((older.multiplier_end - older.multiplier_start) / max(older.rate_steps, 1)).double().cpu()
            r_new = ((newer.multiplier_end - newer.multiplier_start) / max(newer.rate_steps, 1)).double().cpu()
        expected = self.expected_rate.get(key)
        equality, tol = self.keys[key], self.tolerance
        sign = torch.sign(v_new)
        flagged = (v_new.abs() > tol) & (torch.sign(v_old) == sign) & (equality | (sign > 0))
        flagged &= (v_new - v_old).abs() <= self.steady_violation * v_new.abs()
        if has_multiplier:
            steady = (r_new - r_old).abs() <= self.steady_rate * r_new.abs()
            flagged &= (sign * r_new > 0) & (sign * r_old > 0) & steady
            if expected is not None:
                flagged &= (r_new - expected * v_new).abs() <= self.steady_rate * (expected * v_new).abs()
        else:
            flagged &= False  # without a multiplier there is no dual evidence
        mean = recent["mean"]
        flagged &= (torch.sign(mean) == sign) & (mean.abs() > tol)  # the latest steps still say so
        often = recent["fraction"] > self.max_violated_fraction
        held = ~often & (recent["last"] <= tol)
        oscillating = often & (recent["flips"] >= self.min_crossings)
        violated = ~held & ~oscillating
        rate = r_new.tolist() if has_multiplier else []
        expected_rate = (expected * v_new).tolist() if expected is not None and has_multiplier else None
        verdict = Verdict(FEASIBLE, "", self.steps, [], mean.tolist(), rate, expected_rate,
                          recent["largest"].tolist(), recent["fraction"].tolist(), (first, last))
        where = _steps(first, last)
        for name, mask in ((INFEASIBLE, flagged), (VIOLATED, violated), (OSCILLATING, oscillating)):
            if bool(mask.any()):
                verdict.verdict, verdict.entries = name, torch.nonzero(mask).flatten().tolist()
                break
        i = verdict.entries[0] if verdict.entries else 0
        stats = (f"mean violation {verdict.violation[i]:.3g} over {where}, largest {verdict.largest[i]:.3g}, "
                 f"violated on {_percent(verdict.violated_fraction[i])} of them")
        if verdict.verdict == INFEASIBLE:
            verdict.evidence = _infeasible_evidence(verdict.entries, stats, older, newer, v_old, v_new, rate,
                                                    expected_rate)
        elif verdict.verdict == VIOLATED:
            verdict.evidence = (f"entry {i}: {stats}, without the steady dual pattern of an infeasible constraint"
                                if bool(often[i]) else
                                f"entry {i} is violated at the last step ({float(recent['last'][i]):.3g}) though "
                                f"its {stats}: a late blow-up, or not yet settled")
        elif verdict.verdict == OSCILLATING:
            verdict.evidence = (f"oscillating: entry {i} violated on {_percent(verdict.violated_fraction[i])} of "
                                f"{where}, crossing the constraint {int(recent['flips'][i])} times (largest "
                                f"violation {verdict.largest[i]:.3g}, mean {verdict.violation[i]:.3g})")
        else:
            worst = max(verdict.violated_fraction, default=0.0)
            share = "every one" if worst == 0 else f"at least {_percent(1 - worst)}"
            verdict.evidence = (f"every entry held (violation ≤ {tol:g}) on {share} of {where} and at the last "
                                f"step (largest violation {max(verdict.largest, default=0.0):.3g})")
        return verdict

    def state_dict(self) -> dict[str, Any]:
        def pack(w: _Window) -> dict[str, Any]:
            return {"start_step": w.start_step, "length": w.length, "violation_sum": w.violation_sum,
                    "multiplier_start": w.multiplier_start, "rate_steps": w.rate_steps,
                    "multiplier_end": w.multiplier_end}

        return {"steps": self.steps, "closed": dict(self.closed),
                "current": {k: pack(w) for k, w in self.current.items()},
                "done": {k: [pack(w) for w in ws] for k, ws in self.done.items()},
                "recent": {"block": self.block, "blocks": self.blocks, "start": self.recent_start,
                           "ring": {k: dict(r) for k, r in self.ring.items()}}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.steps = int(state["steps"])
        self.closed = {k: int(state["closed"].get(k, 0)) for k in self.keys}
        self.current = {k: _Window(**w) for k, w in state["current"].items() if k in self.keys}
        self.done = {k: [_Window(**w) for w in state["done"].get(k, [])] for k in self.keys}
        recent = state.get("recent")
        if recent is not None and (int(recent["block"]), int(recent["blocks"])) == (self.block, self.blocks):
            self.recent_start = int(recent["start"])
            self.ring = {k: {n: t.clone() for n, t in r.items()} for k, r in recent["ring"].items() if k in self.keys}
        else:  # a checkpoint without the recent span (or another granularity): it starts again here
            self.recent_start, self.ring = self.steps, {}


def _infeasible_evidence(entries: list[int], stats: str, older: _Window, newer: _Window, v_old: torch.Tensor,
                         v_new: torch.Tensor, rate: list[float], expected_rate: list[float] | None) -> str:
    i = entries[0]
    which = f"entry {i}" if len(entries) == 1 else f"entries {entries} (e.g. {i})"
    end = newer.start_step + newer.length - 1
    text = (f"{which}: {stats}; λ moved {rate[i]:+.3g} per step over steps {newer.start_step:,}–{end:,}, "
            f"steadily")
    if expected_rate is not None:
        text += f" (η_d·violation = {expected_rate[i]:+.3g})"
    return (text + f", while the mean violation held at {float(v_new[i]):.3g} (was {float(v_old[i]):.3g} over "
            f"steps {older.start_step:,}–{older.start_step + older.length - 1:,})")


def describe(verdicts: Mapping[str, Verdict | Mapping[str, Any]], formulation: str | None = None) -> list[str]:
    """Plain sentences naming each likely-infeasible, violated or oscillating constraint and what to do about it.

    ``verdicts`` may be :meth:`FeasibilityMonitor.verdicts` or their ``as_dict()`` form (metrics.json).
    """
    def field_of(verdict: Verdict | Mapping[str, Any], name: str) -> Any:
        return verdict[name] if isinstance(verdict, Mapping) else getattr(verdict, name)

    def named(kind: str) -> list[str]:
        return [k for k, v in verdicts.items() if field_of(v, "verdict") == kind]

    flagged = named(INFEASIBLE)
    lines = [f"constraint {key!r} is likely infeasible: {field_of(verdicts[key], 'evidence')}." for key in flagged]
    if len(flagged) > 1:
        lines.append(f"constraints {flagged} pull against each other: they cannot all hold at once.")
    if flagged and formulation != "resilient":
        lines.append("Their multipliers will grow for ever (lowering dual_lr only slows that down). Relax them: "
                     "formulation 'resilient' (strategy ace_resilient: a learned slack u ≥ 0 of cost ρ/2‖u‖² per "
                     "entry), a looser bound, or fewer constraints.")
    lines += [f"constraint {key!r} is violated over the latest steps: {field_of(verdicts[key], 'evidence')}."
              for key in named(VIOLATED)]
    swinging = named(OSCILLATING)
    lines += [f"constraint {key!r} is {field_of(verdicts[key], 'evidence')}." for key in swinging]
    if swinging:
        lines.append("An oscillating iterate meets its constraints on average only. Damp it: "
                     "dual_optimizer 'nupi' (proportional gain), or formulation 'augmented_lagrangian'; or deploy "
                     "the average of the iterates (training.averaging: uniform); a target measured on "
                     "mini-batches swings with their noise too: judge the deployed model on the whole split "
                     "(the certificate).")
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
