r"""Reports of a run: every constraint by name, and the symmetry report of homotopy (γ) constraints.

:func:`constraint_report` names every constraint of a run, its kind, fields, multiplier and measured
validation/test violation. The γ vocabulary below is for homotopy constraints only.

:class:`SymmetryReport` collects, per constrained layer, the final γ_i, λ_i, u_i, the branch
contribution :math:`\|\gamma_i f_{neq,i}\|` (when logged) and the signature read by
:mod:`constrained_eq.run.diagnostics`, plus the measured equivariance error and the Thm 4.2 bound
:math:`2\bar\gamma (M + C\bar\gamma)^{L-1} L B^2 \|x\|` (C = max(B, M)) from the final γ.

:func:`symmetry_report` builds one from a run folder's ``history.csv`` whose per-layer columns are
``<constraint>.<field>.<i>`` (fields ``gamma`` or ``value`` for γ, ``lambda``, ``slack``, optionally
``contribution``). The plots follow ACE Figs. 4–6.
"""

from __future__ import annotations

import csv
import json
import math
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from constrained_eq.core.formulations import FORMULATIONS
from constrained_eq.run.diagnostics import (
    RELAXED_RTOL,
    check_resilient,
    classify_equality,
    relaxation_significance,
    slack_ranking,
)
from constrained_eq.symmetry.bounds import equivariance_error_bound
from constrained_eq.training.certificate import certificate_lines

__all__ = ["LayerSummary", "SymmetryReport", "build_report", "read_history", "symmetry_report",
           "constraint_report", "read_run_summary", "homotopy_constraints", "run_rho"]

GAMMA_FIELDS = ("gamma", "value")
_COLUMN = re.compile(r"^(?P<key>.+)\.(?P<field>gamma|value|lambda|slack|contribution)\.(?P<i>\d+)$")


@dataclass
class LayerSummary:
    """One constrained layer at the end of training (``nan`` where not logged)."""

    layer: int
    gamma: float
    lam: float
    slack: float
    contribution: float
    signature: str
    significance: float = math.nan


@dataclass
class SymmetryReport:
    r"""Per-layer summary of a run; ``str(report)`` is a table, :meth:`to_json` a JSON string.

    Attributes:
        formulation: ``"lagrangian"`` (equality, Alg. 1), ``"resilient"`` (Alg. 2), or the run's formulation
            when it is known (``"augmented_lagrangian"``, and ``"none"``/``"schedule"``/``"penalty"``, whose γ
            carry no multiplier: signatures ``free``/``scheduled``/``penalised``).
        layers: One :class:`LayerSummary` per constrained layer.
        rho: Slack cost ρ of a resilient run.
        slack_ranking: Layers by decreasing slack (resilient runs).
        kkt_ok: Whether :math:`u \approx \lambda/\rho` and :math:`|\gamma| \approx u` (active) hold.
        equivariance_error: Measured error of the final model, if logged.
        bound: Thm 4.2 from the final γ, if B, M and ‖x‖ were given.
        objective_scale: J₀ the significance :math:`\lambda_i u_i / J_0` is measured against (resilient runs).
        relaxed_rtol: A layer is ``relaxed`` when :math:`\lambda_i u_i \ge` ``relaxed_rtol`` · J₀.
    """

    formulation: str
    layers: list[LayerSummary]
    rho: float | None = None
    slack_ranking: list[int] = field(default_factory=list)
    kkt_ok: bool | None = None
    equivariance_error: float | None = None
    bound: float | None = None
    objective_scale: float | None = None
    relaxed_rtol: float | None = None

    def __str__(self) -> str:
        head = f"{'layer':>5} {'gamma':>10} {'lambda':>10} {'slack':>10} {'|γ f_neq|':>10} {'λu/J0':>10}  signature"
        rows = [f"{s.layer:>5} {s.gamma:>10.4g} {s.lam:>10.4g} {s.slack:>10.4g} {s.contribution:>10.4g} "
                f"{s.significance:>10.3g}  {s.signature}" for s in self.layers]
        lines = [f"SymmetryReport ({self.formulation}" + (f", rho={self.rho:g})" if self.rho else ")"), head, *rows]
        if self.slack_ranking:
            lines.append(f"layers by slack: {self.slack_ranking}; KKT u≈λ/ρ, |γ|≈u at rho={self.rho:g}: {self.kkt_ok}")
        if self.objective_scale is not None:
            lines.append(f"relaxed: λ_i u_i ≥ {self.relaxed_rtol:g} · J0, the objective gain of the slack against "
                         f"the objective's scale J0 = {self.objective_scale:.4g} (tail-mean train loss)")
        if self.equivariance_error is not None or self.bound is not None:
            lines.append(f"equivariance error {_fmt(self.equivariance_error)} ≤ Thm 4.2 bound {_fmt(self.bound)}")
        return "\n".join(lines)

    def to_json(self) -> str:
        """The report as JSON (``nan`` becomes ``null``)."""
        def clean(v):
            if isinstance(v, float) and not math.isfinite(v):
                return None
            if isinstance(v, dict):
                return {k: clean(x) for k, x in v.items()}
            if isinstance(v, list):
                return [clean(x) for x in v]
            return v
        return json.dumps(clean(asdict(self)), indent=2)


def _fmt(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.4g}"


VALIDATION_CONTRIBUTIONS = "val_branch"  # columns val_branch.contribution.<i>
SHORT = "too-short"  # the signature of a history with a single logged point


def unconstrained_signatures() -> dict[str, str]:
    """Formulation name → the signature of every layer of a run without multipliers on γ, from the registry.

    Each registered formulation with a ``signature`` (``none``: ``free``, ``schedule``: ``scheduled``,
    ``penalty``: ``penalised``, and any registered with ``ceq.register_formulation`` that sets one).
    """
    return {name: cls.signature for name, cls in FORMULATIONS.items() if cls.signature is not None}


def build_report(
    gamma,
    lam,
    slack=None,
    *,
    rho: float | None = None,
    contribution=None,
    equivariance_error: float | None = None,
    B: float | None = None,
    M: float | None = None,
    x_norm: float | None = None,
    formulation: str | None = None,
    objective=None,
    relaxed_rtol: float = RELAXED_RTOL,
    **thresholds,
) -> SymmetryReport:
    r"""Build a :class:`SymmetryReport` from ``(T, L)`` histories.

    A run with ``slack`` is read as resilient, at its slack cost ``rho`` (KKT: u ≈ λ/ρ). Its layers are
    ``relaxed`` when the relaxation is significant against the objective's scale — :math:`\bar\lambda_i
    \bar u_i \ge` ``relaxed_rtol`` · J₀ with J₀ the ``objective`` history (the train loss; see
    :func:`~constrained_eq.run.diagnostics.relaxation_significance`) — and ``tight`` otherwise; without an
    objective, ``active``/``tight`` by λ_i > 0 alone. A history of one logged point gets ``too-short``.
    A run whose ``formulation`` has no multiplier on γ (``"none"``,
    ``"schedule"``, ``"penalty"``) gets the signature ``free``, ``scheduled`` or ``penalised``
    (the formulation's ``signature``, see :func:`unconstrained_signatures`). Otherwise
    the equality signatures of :func:`~constrained_eq.run.diagnostics.classify_equality` (``thresholds`` are
    passed on), labelled ``formulation`` (default ``"lagrangian"``).
    The bound is Thm 4.2 with C = max(B, M) at the final γ when ``B``, ``M``, ``x_norm`` are given.
    """
    g, lm = np.asarray(gamma, float), np.asarray(lam, float)
    L = g.shape[1]
    contrib = np.full(L, np.nan) if contribution is None else np.asarray(contribution, float).reshape(-1, L)[-1]
    bound = None
    if B is not None and M is not None and x_norm is not None:
        bound = float(equivariance_error_bound(np.abs(g[-1]).tolist(), B=B, M=M, x_norm=x_norm))
    if slack is not None:
        return _resilient_report(g, lm, np.asarray(slack, float), rho or 1.0, contrib, objective, relaxed_rtol,
                                 equivariance_error, bound)
    unconstrained = unconstrained_signatures()
    if formulation in unconstrained:
        signatures = [unconstrained[formulation]] * L
    elif g.shape[0] < 2:
        signatures = [SHORT] * L
    else:
        signatures = classify_equality(g, lm, **thresholds)
    layers = [LayerSummary(i, float(g[-1, i]), float(lm[-1, i]), math.nan, float(contrib[i]), signatures[i])
              for i in range(L)]
    return SymmetryReport(formulation or "lagrangian", layers, None, [], None, equivariance_error, bound)


def _resilient_report(g: np.ndarray, lm: np.ndarray, u: np.ndarray, rho: float, contrib: np.ndarray, objective,
                      relaxed_rtol: float, equivariance_error: float | None, bound: float | None) -> SymmetryReport:
    """The report of a resilient run: KKT check u ≈ λ/ρ, and each layer ``relaxed``/``tight`` (see build_report)."""
    L = g.shape[1]
    if g.shape[0] < 2:  # one logged point: no dynamics to read
        layers = [LayerSummary(i, float(g[-1, i]), float(lm[-1, i]), float(u[-1, i]), float(contrib[i]),
                               SHORT) for i in range(L)]
        return SymmetryReport("resilient", layers, rho, slack_ranking(u[-1]).tolist(), None,
                              equivariance_error, bound)
    check = check_resilient(g, lm, u, rho)
    scale, significance = None, np.full(L, np.nan)
    if objective is not None and np.isfinite(np.asarray(objective, float)).any():
        j = np.asarray(objective, float)
        j = j[np.isfinite(j)] if j.ndim else j
        significance = relaxation_significance(lm, u, j)
        scale = float(np.abs(np.mean(j[-max(1, int(round(0.1 * j.size))):]))) if j.ndim else abs(float(j))
        signatures = ["relaxed" if s >= relaxed_rtol else "tight" for s in significance]
    else:  # no objective to compare with: only whether the constraint is active
        signatures = ["active" if a else "tight" for a in check.active]
    layers = [LayerSummary(i, float(g[-1, i]), float(lm[-1, i]), float(u[-1, i]), float(contrib[i]),
                           signatures[i], float(significance[i])) for i in range(L)]
    return SymmetryReport("resilient", layers, rho, slack_ranking(u).tolist(), check.ok,
                          equivariance_error, bound, scale, relaxed_rtol if scale is not None else None)


def read_history(path: str | Path) -> tuple[dict[str, dict[str, np.ndarray]], dict[str, np.ndarray]]:
    """Read a ``history.csv``: per constraint key, ``{field: (T, L) array}``, and the other columns.

    γ is returned under ``"gamma"`` whether logged as ``gamma`` or ``value``.
    """
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        raise ValueError(f"Expected '{path}' to hold at least one row (got none)")
    groups: dict[str, dict[str, dict[int, str]]] = {}
    others: dict[str, np.ndarray] = {}
    for name in rows[0]:
        m = _COLUMN.match(name)
        if m:
            fld = "gamma" if m["field"] in GAMMA_FIELDS else m["field"]
            groups.setdefault(m["key"], {}).setdefault(fld, {})[int(m["i"])] = name
        else:
            others[name] = np.array([_num(r[name]) for r in rows])
    out = {key: {fld: np.array([[_num(r[cols[i]]) for i in sorted(cols)] for r in rows])
                 for fld, cols in fields.items()}
           for key, fields in groups.items()}
    return out, others


def _num(text: str | None) -> float:
    try:
        return float(text) if text not in (None, "") else math.nan
    except ValueError:
        return math.nan


def _last_finite(columns: dict[str, np.ndarray], names: tuple[str, ...]) -> float | None:
    """The last finite value of the first of ``names`` that has one (``None`` if none has)."""
    for name in names:
        if name in columns and np.isfinite(columns[name]).any():
            return float(columns[name][np.isfinite(columns[name])][-1])
    return None


def symmetry_report(
    run_dir: str | Path,
    *,
    constraint: str | None = None,
    rho: float | None = None,
    error_column: str = "val_equivariance_error",
    B: float | None = None,
    M: float | None = None,
    x_norm: float | None = None,
    **thresholds,
) -> SymmetryReport:
    """Build the report of a run folder from its ``history.csv`` (or a path to the CSV itself).

    The formulation is read from the folder's ``metrics.json`` when there is one; the ``|γ f_neq|``
    column from ``<constraint>.contribution.<i>`` or, failing that, from the validation-measured
    ``val_branch.contribution.<i>`` that ``ceq run`` logs.

    Args:
        run_dir: Run folder or CSV path.
        constraint: Constraint key (default: the first key with γ columns, e.g. ``equality_gammas``).
        rho: Slack cost of a resilient run (default: the run's own, from ``metrics.json``'s structure or
            ``formulation_options``; 1, as ACE, for a run folder without them).
        error_column: Column holding the equivariance error (also tried without ``val_``).
        B: Lipschitz constant of the non-equivariant branches (Thm 4.2; omitted: no bound).
        M: Lipschitz constant of the layers (Thm 4.2).
        x_norm: Input norm ‖x‖ (Thm 4.2).
        **thresholds: Passed to :func:`~constrained_eq.run.diagnostics.classify_equality`.
    """
    path = Path(run_dir)
    path = path / "history.csv" if path.is_dir() else path
    groups, others = read_history(path)
    summary = read_run_summary(path.parent)
    homotopy = homotopy_constraints(summary, groups)
    keys = [k for k, f in groups.items() if "gamma" in f and k in homotopy]
    if constraint is None:
        if not keys:
            raise ValueError(f"Expected '{path}' to have homotopy (γ) constraints with '<constraint>.value.<i>' "
                             f"columns (got {sorted(groups)})")
        constraint = keys[0]
    if constraint not in keys:
        raise ValueError(f"Expected 'constraint' to be one of {', '.join(map(repr, keys))} (got {constraint!r})")
    f = groups[constraint]
    lam = f.get("lambda", np.zeros_like(f["gamma"]))
    error = _last_finite(others, (error_column, error_column.removeprefix("val_")))
    contribution = f.get("contribution")
    measured = groups.get(VALIDATION_CONTRIBUTIONS, {}).get("contribution")  # logged by `ceq run` at validation
    if contribution is None and measured is not None and measured.shape[1] == f["gamma"].shape[1]:
        contribution = measured
    if rho is None:
        rho = run_rho(summary, constraint)
    return build_report(f["gamma"], lam, f.get("slack"), rho=rho, contribution=contribution,
                        equivariance_error=error, B=B, M=M, x_norm=x_norm, formulation=summary.get("formulation"),
                        objective=others.get("train_loss"), **thresholds)


def read_run_summary(run_dir: str | Path) -> dict:
    """The run folder's ``metrics.json`` (empty when there is none)."""
    metrics = Path(run_dir) / "metrics.json"
    return json.loads(metrics.read_text()) if metrics.exists() else {}


def homotopy_constraints(summary: dict, groups: dict | None = None) -> set[str]:
    """Names of the run's homotopy (γ) constraints: from ``metrics.json``'s structure, else ``*gammas`` keys."""
    described = summary.get("structure", {}).get("constraints")
    if described:
        return {c["name"] for c in described if c.get("homotopy")}
    return {k for k in (groups or {}) if k.endswith("gammas")}


def run_rho(summary: dict, constraint: str) -> float:
    """The slack cost ρ a run used for ``constraint``: its plan's ρ, else the formulation's, else 1 (ACE)."""
    for described in summary.get("structure", {}).get("constraints", []):
        if described.get("name") == constraint and described.get("rho") is not None:
            return float(described["rho"])
    return float(summary.get("formulation_options", {}).get("rho", 1.0))


def _fields_text(described: dict) -> str:
    skip = {"name", "kind", "target", "reads", "homotopy", "mode", "size"}
    return ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in described.items()
                     if k not in skip and v is not None) or "-"


def _verdict_text(verdict: dict | None, key: str) -> str:
    if not verdict or key not in verdict.get("max_violation", {}):
        return "n/a"
    return f"{verdict['max_violation'][key]:.4g}"


def constraint_report(run_dir: str | Path) -> str:
    """A table of every constraint of a run by name, with the selected model's validation and test violations.

    Columns: kind, target, fields (bound, ρ, …), final max|λ|, largest violation on validation and test,
    then the feasibility verdicts. Reads ``metrics.json`` (written by :func:`~constrained_eq.training.loop.fit` and
    ``ceq run``) and ``history.csv``; names the formulation that ran with its options.
    """
    run_dir = Path(run_dir)
    summary = read_run_summary(run_dir)
    groups, _ = read_history(run_dir / "history.csv")
    formulation = summary.get("formulation", "unknown")
    options = summary.get("formulation_options") or {}
    described = summary.get("structure", {}).get("constraints", [])
    feasibility = summary.get("measured_constraints", {})
    head = (f"constraints ({formulation}" + ("".join(f", {k}={v}" for k, v in options.items())) + ")")
    rows = []
    for c in described:
        lam = groups.get(c["name"], {}).get("lambda")
        last_lam = f"{float(np.nanmax(np.abs(lam[-1]))):.4g}" if lam is not None and lam.size else "-"
        rows.append([c["name"], c["kind"], c["target"], _fields_text(c), last_lam,
                     _verdict_text(feasibility.get("best"), c["name"]),
                     _verdict_text(feasibility.get("test"), c["name"])])
    header = ["constraint", "kind", "target", "fields", "max|λ|", "val viol", "test viol"]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = [head, *("  ".join(cell.ljust(w) if i < 4 else cell.rjust(w) for i, (cell, w) in
                               enumerate(zip(row, widths, strict=True))) for row in [header, *rows])]
    tolerance = feasibility.get("tolerance")
    if tolerance is not None:
        def said(verdict):
            return "n/a" if not verdict else ("yes" if verdict.get("feasible") else "NO")
        counted = (feasibility.get("best") or {}).get("counted", [])
        uncounted = [c["name"] for c in described if c.get("homotopy") and c["name"] not in counted]
        why = (f"; not counted: {', '.join(uncounted)}, homotopy constraints on γ, which the deployed projection "
               "meets exactly (γ = 0)" if uncounted else "")
        lines.append(f"feasible (every counted constraint's violation ≤ {tolerance:g}; counted: "
                     f"{', '.join(counted) or 'none'}{why}): validation {said(feasibility.get('best'))}, "
                     f"test {said(feasibility.get('test'))}")
    if summary.get("selection"):
        lines.append(f"selected: {summary['selection']}")
    if summary.get("certificate"):
        lines += certificate_lines(summary["certificate"])
    return "\n".join(lines)
