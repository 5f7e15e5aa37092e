r"""The certificate of the deployed model: every constraint measured exactly on the model that is deployed.

Training-time verdicts (:mod:`constrained_eq.core.solver.feasibility`) speak of mini-batches and of iterates; what a
user ships is one model — the selected iterate, the average of the iterates, or its projection f_{θ,0}. At
the end of :func:`~constrained_eq.training.loop.fit` and of ``ceq run`` every constraint is measured on that model:

* a parameter-only target once, *exactly*: with its ``exact`` (``spectral_norms``: the largest singular value
  ``torch.linalg.matrix_norm(W, ord=2)``, not the power-iteration estimate training steps with), else as
  the target computes it;
* a target that reads data over the *whole* split (the batch-size-weighted mean, or ``from_totals`` of the
  split's sums, :func:`~constrained_eq.core.solver.split_feasibility.split_values`);
* a homotopy constraint (on γ) of a model deployed projected is **discharged by projection**: f_{θ,0} has
  γ = 0 exactly; the relaxed model's values before projection are given beside it.

Per entry: the value, the violation :math:`v^+` (:math:`|h - d|`, :math:`[g - b]_+`, :math:`[|h| - u]_+`) and
the margin :math:`m = -(g - b)` of an inequality side (:math:`m \ge 0`: held with that much room) or
:math:`m = -|h - d|` of an equality. An entry holds when :math:`v^+ \le \tau`. The deployed model **meets
its hard constraints** when every counted constraint (not a penalty, not a homotopy constraint; see
:func:`~constrained_eq.core.solver.split_feasibility.counted`) holds in every entry.
"""

from __future__ import annotations

import copy
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from constrained_eq.core.solver.feasibility import INFEASIBLE
from constrained_eq.core.solver.split_feasibility import counted, is_homotopy, signed_violations, split_values
from constrained_eq.homotopy import is_relaxed, project

__all__ = ["Certificate", "certify", "certify_selected", "certificate_lines", "exit_status"]

_SHOWN = 8  # entries printed per constraint (metrics.json holds them all)


@dataclass
class Certificate:
    """Every constraint measured on the deployed model (see the module for the rule).

    Attributes:
        deployed: Which model, in words (``"selected iterate of epoch 3, projected"``).
        split: The split data targets were measured on, or ``None``.
        tolerance: τ.
        constraints: Per constraint: ``kind``, ``how`` it was measured, ``values``, ``violations``,
            ``margins``, ``holds`` (``None`` when not measured), ``counted``, ``training`` (the training-time
            verdict and its evidence, or ``None``) and, when discharged by projection, ``before_projection``.
    """

    deployed: str
    split: str | None
    tolerance: float
    constraints: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def violated(self) -> list[str]:
        """The counted constraints the deployed model violates."""
        return [k for k, c in self.constraints.items() if c["counted"] and c["holds"] is False]

    @property
    def holds(self) -> bool:
        """Whether the deployed model meets every hard (counted) constraint."""
        return not self.violated

    @property
    def likely_infeasible(self) -> list[str]:
        """The constraints training judged likely infeasible."""
        return [k for k, c in self.constraints.items() if (c["training"] or {}).get("verdict") == INFEASIBLE]

    def as_dict(self) -> dict[str, Any]:
        return {"deployed": self.deployed, "split": self.split, "tolerance": self.tolerance,
                "holds": self.holds, "violated": self.violated, "likely_infeasible": self.likely_infeasible,
                "constraints": self.constraints}


def _verdict_dict(verdict: Any) -> dict[str, Any] | None:
    if verdict is None:
        return None
    return dict(verdict) if isinstance(verdict, Mapping) else verdict.as_dict()


@torch.no_grad()
def certify(solver: Any, model: torch.nn.Module, loader: Any = None, *, tolerance: float, split: str | None = None,
            deployed: str = "the selected model", relaxed_model: torch.nn.Module | None = None,
            verdicts: Mapping[str, Any] | None = None) -> Certificate:
    """Measure every non-penalty constraint of ``solver``'s problem on ``model`` exactly.

    Args:
        solver: The :class:`~constrained_eq.core.solver.engine.Solver` (its plans say how each constraint is enforced,
            its slacks u relax the resilient ones).
        model: The deployed model.
        loader: The whole split that data targets are measured on (default: none; they are then not measured).
        tolerance: τ.
        split: The split's name, for the text (``"test"``).
        deployed: Which model it is, in words.
        relaxed_model: The model before projection when ``model`` is its projection f_{θ,0}: homotopy
            constraints are then discharged by projection (default: none).
        verdicts: The training-time verdicts (``solver.feasibility()`` or their ``as_dict()`` form).

    Returns:
        Certificate: values, violations, margins per entry, and the verdicts beside them.
    """
    plans = [p for p in solver.plans if not p.constraint.is_penalty]
    hard = set(counted(plans))
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    was_training = model.training
    model.eval()
    values: dict[str, torch.Tensor] = {}
    how: dict[str, str] = {}
    before: dict[str, list[float]] = {}
    for plan in plans:
        target = plan.constraint.target
        if relaxed_model is not None and is_homotopy(plan):
            before[plan.key] = target(relaxed_model).detach().reshape(-1).tolist()
            values[plan.key] = torch.zeros(len(before[plan.key]), dtype=torch.float64)
            how[plan.key] = "discharged by projection"
        elif not target.needs_batch:
            exact = target.exact is not None
            value, note = _on_deployed(lambda m, t=target, e=exact: t.exact(m) if e else t(m), model, relaxed_model)
            values[plan.key] = value.detach().reshape(-1)
            how[plan.key] = "exact" + (f" ({target.name} computed exactly)" if exact else "") + note
    batch_plans = [p for p in plans if p.constraint.target.needs_batch and p.key not in values]
    if batch_plans and loader is not None:
        try:
            values.update(split_values(batch_plans, solver.problem, model, loader, device))
            how.update({p.key: f"over the whole {split or 'given'} split" for p in batch_plans})
        except Exception:
            if relaxed_model is None:
                raise
            for p in batch_plans:  # one at a time: which of them does not apply to the projected model
                value, note = _on_deployed(lambda m, p=p: split_values([p], solver.problem, m, loader, device)[p.key],
                                           model, relaxed_model)
                values[p.key] = value
                how[p.key] = f"over the whole {split or 'given'} split{note}"
    model.train(was_training)
    certificate = Certificate(deployed, split, float(tolerance))
    for plan in plans:
        entry: dict[str, Any] = {"kind": type(plan.constraint).__name__, "counted": plan.key in hard,
                                 "training": _verdict_dict((verdicts or {}).get(plan.key)), "holds": None,
                                 "how": how.get(plan.key, "not measured: it reads data and no split was given"),
                                 "values": [], "violations": [], "margins": []}
        if plan.key in values:
            value = values[plan.key].double()
            if plan.key in before:
                raw, equality = torch.zeros(value.numel(), dtype=torch.float64), True
                entry["before_projection"] = before[plan.key]
            else:
                slack = solver.slacks.get(plan.key)
                raw, equality = signed_violations(plan, value, None if slack is None else slack.detach().double())
                raw = raw.double()
            violation = raw.abs() if equality else raw.clamp(min=0.0)
            entry.update(values=value.tolist(), violations=violation.tolist(),
                         margins=(-raw.abs() if equality else -raw).tolist(),
                         holds=bool((violation <= tolerance).all()))
        certificate.constraints[plan.key] = entry
    return certificate


def _on_deployed(measure: Any, model: torch.nn.Module, relaxed_model: torch.nn.Module | None) -> tuple[Any, str]:
    """``measure(model)``, and a note ("" when it applied).

    A target written for the relaxed model that fails on its projection is measured on the relaxed model
    instead, and the note says so.
    """
    try:
        return measure(model), ""
    except Exception as err:
        if relaxed_model is None:
            raise
        return measure(relaxed_model), (f", on the model before projection: the target does not apply to the "
                                        f"projected one ({type(err).__name__}: {err})")


def _numbers(items: list[float]) -> str:
    shown = ", ".join(f"{v:.4g}" for v in items[:_SHOWN])
    return f"[{shown}{', …' if len(items) > _SHOWN else ''}]"


def certificate_lines(certificate: Mapping[str, Any] | Certificate) -> list[str]:
    """The certificate in plain lines (``constraint_report.txt``, the printed summary, ``ceq report``)."""
    data = certificate.as_dict() if isinstance(certificate, Certificate) else certificate
    tol = data["tolerance"]
    where = f", data targets over the whole {data['split']} split" if data.get("split") else ""
    lines = [f"certificate of the deployed model ({data['deployed']}; measured exactly{where}; an entry holds when "
             f"its violation ≤ {tol:g}):"]
    for key, c in data["constraints"].items():
        if c["how"] == "discharged by projection":
            largest = max((abs(v) for v in c.get("before_projection", [])), default=0.0)
            said = (f"discharged by projection: the deployed model is projected (f_θ,0), so its γ = 0 exactly "
                    f"(before projection max|γ| = {largest:.4g})")
        elif c["holds"] is None:
            said = c["how"]
        else:
            worst = max(range(len(c["margins"])), key=lambda i: -c["margins"][i], default=0)
            state = "holds" if c["holds"] else f"VIOLATED (entry {worst}: violation {c['violations'][worst]:.4g})"
            said = (f"{state}, {c['how']}: value {_numbers(c['values'])}, margin {_numbers(c['margins'])}"
                    + ("" if c["counted"] else "; not counted (a homotopy constraint)"))
        lines.append(f"  {key} ({c['kind']}): {said}")
        training = c.get("training")
        if training:
            lines.append(f"    training verdict: {training['verdict']}: {training['evidence']}")
    if data["violated"]:
        lines.append(f"the deployed model VIOLATES hard constraint(s) {', '.join(data['violated'])}")
    else:
        lines.append("the deployed model meets every hard constraint")
    if data.get("likely_infeasible"):
        lines.append(f"training judged likely infeasible: {', '.join(data['likely_infeasible'])}")
    return lines


def certify_selected(solver: Any, model: torch.nn.Module, state: Mapping[str, Any] | None, *, epoch: int,
                     averaged: bool, projected: bool, loader: Any, split: str | None,
                     tolerance: float) -> Certificate:
    """:func:`certify` the model ``fit`` deploys.

    That is ``model`` with the selected ``state`` (``None``: as it is), projected when ``projected`` and the
    model is relaxed.
    """
    selected = copy.deepcopy(model)
    if state is not None:
        selected.load_state_dict(state)
    which = "averaged model" if averaged else "iterate"
    words = f"selected {which} of epoch {epoch}" if state is not None else f"last iterate (epoch {epoch})"
    relaxed = selected if projected and is_relaxed(selected) else None
    deployed = project(selected, inplace=False) if relaxed is not None else selected
    return certify(solver, deployed, loader, tolerance=tolerance, split=split,
                   deployed=words + (", projected" if relaxed is not None else ""), relaxed_model=relaxed,
                   verdicts=solver.feasibility())


def exit_status(certificate: Mapping[str, Any] | None, allow: bool, code: int) -> int:
    """Print the certificate and return the exit status of ``ceq run``.

    ``code`` when the deployed model violates a hard constraint or one is likely infeasible (0 with ``allow``,
    after a warning on stderr), else 0.
    """
    if not certificate:
        return 0
    for line in certificate_lines(certificate):
        print(line)
    problems = ([f"the deployed model violates {', '.join(certificate['violated'])}"] if certificate["violated"]
                else []) + ([f"likely infeasible: {', '.join(certificate['likely_infeasible'])}"]
                            if certificate["likely_infeasible"] else [])
    if not problems:
        return 0
    if allow:
        print(f"ceq: warning: {'; '.join(problems)} (exit status 0: --allow-infeasible)", file=sys.stderr)
        return 0
    print(f"ceq: {'; '.join(problems)}; exit status {code} (pass --allow-infeasible for 0)", file=sys.stderr)
    return code
