"""Infeasibility told plainly: ``solver.feasibility()`` from the dual dynamics.

Infeasible problems at Cooper's step sizes (x⁰ = 1, primal SGD 3e-2, dual SGD 0.2/√n; min ‖x‖²):
x₀ ≤ −1 together with x₀ ≥ 1, and x₀ = 1 together with x₀ = −1. The feasible family of Cooper's
tests is checked in tests/pipeline/test_cooper_parity.py (never flagged).
"""

import math
import warnings

import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import constrained_eq as ceq
from constrained_eq.core.feasibility import FEASIBLE, INFEASIBLE, UNDECIDED, FeasibilityMonitor, describe
from constrained_eq.core.sync_audit import forbid_host_reads
from constrained_eq.core.testing import VectorModel

N = 5
FIRST_VERDICT = 512 + 1024  # two windows


def _x0():
    return ceq.Target(lambda m, b, o: m.x[:1], "x0", needs_batch=False)


def _solver(constraints, formulation="lagrangian", scheme="simultaneous", **kwargs):
    problem = ceq.ConstrainedProblem(lambda out, batch: torch.sum(out**2), constraints)
    model = VectorModel(N, torch.ones(N))
    optimizer = (cooper_extra_sgd(model) if scheme == "extrapolation" else torch.optim.SGD(model.parameters(), 3e-2))
    return ceq.Solver(problem, model, formulation, optimizer, 0.2 / math.sqrt(N), constrained_optimizer=scheme,
                      **kwargs)


def cooper_extra_sgd(model):
    import cooper

    return cooper.optim.ExtraSGD(model.parameters(), lr=3e-2)


def _run(solver, steps):
    for _ in range(steps):
        solver.step()
    return solver.feasibility()


@pytest.mark.parametrize("scheme", ["simultaneous", "alternating_primal_dual", "alternating_dual_primal",
                                    "extrapolation"])
def test_contradictory_bounds_are_flagged_at_the_first_verdict(scheme):
    solver = _solver([ceq.Inequality(_x0(), bound=-1.0, name="x0 ≤ −1"), ceq.Inequality(_x0(), lower=1.0)],
                     scheme=scheme)
    verdicts = _run(solver, FIRST_VERDICT)
    assert [v.verdict for v in verdicts.values()] == [INFEASIBLE, INFEASIBLE]
    eta = 0.2 / math.sqrt(N)
    for verdict in verdicts.values():
        # x₀ settles at 0: each violation is 1, each multiplier grows by η_d per step
        assert verdict.entries == [0]
        assert verdict.violation[0] == pytest.approx(1.0, abs=1e-3)
        assert verdict.rate[0] == pytest.approx(eta, rel=1e-3)
        assert verdict.expected_rate[0] == pytest.approx(eta, rel=1e-3)
    lines = describe(verdicts, "lagrangian")
    assert lines[0].startswith("constraint 'x0 ≤ −1' is likely infeasible: entry 0: mean violation 1 over the last "
                               "1024 steps")
    assert lines[1].startswith("constraint 'inequality_x0' is likely infeasible")
    assert lines[2] == "constraints ['x0 ≤ −1', 'inequality_x0'] pull against each other: they cannot all hold at once."
    assert "formulation 'resilient'" in lines[3]


def test_the_augmented_lagrangian_is_flagged_too():
    solver = _solver([ceq.Inequality(_x0(), bound=-1.0), ceq.Inequality(_x0(), lower=1.0)], "augmented_lagrangian")
    assert {v.verdict for v in _run(solver, FIRST_VERDICT).values()} == {INFEASIBLE}


def test_inconsistent_equalities_show_the_complementary_pattern():
    solver = _solver([ceq.Equality(_x0(), value=1.0, name="x0 = 1"), ceq.Equality(_x0(), value=-1.0, name="x0 = -1")])
    verdicts = _run(solver, FIRST_VERDICT)
    assert [v.verdict for v in verdicts.values()] == [INFEASIBLE, INFEASIBLE]
    # violations of opposite signs, multipliers drifting apart at η_d per step
    assert verdicts["x0 = 1"].violation[0] == pytest.approx(-1.0, abs=1e-3)
    assert verdicts["x0 = -1"].violation[0] == pytest.approx(1.0, abs=1e-3)
    assert verdicts["x0 = 1"].rate[0] < 0 < verdicts["x0 = -1"].rate[0]


def test_one_vector_constraint_with_contradictory_entries_names_them():
    both = ceq.Target(lambda m, b, o: torch.cat([m.x[:1], m.x[:1], m.x[1:2]]), "x0 x0 x1", needs_batch=False)
    solver = _solver([ceq.Equality(both, value=[1.0, -1.0, 0.5])])
    verdict = _run(solver, FIRST_VERDICT)["equality_x0 x0 x1"]
    assert verdict.verdict == INFEASIBLE and verdict.entries == [0, 1]


def test_the_resilient_formulation_absorbs_the_contradiction():
    solver = _solver([ceq.Inequality(_x0(), bound=-1.0), ceq.Inequality(_x0(), lower=1.0)], "resilient", rho=1.0)
    assert {v.verdict for v in _run(solver, FIRST_VERDICT).values()} == {FEASIBLE}


def test_a_feasible_problem_is_judged_feasible_and_nothing_is_decided_early():
    solver = _solver([ceq.Inequality(_x0(), bound=-1.0)])
    assert _run(solver, FIRST_VERDICT - 1)["inequality_x0"].verdict == UNDECIDED
    assert _run(solver, 1)["inequality_x0"].verdict == FEASIBLE


def test_the_statistics_cost_no_host_read_per_step():
    solver = _solver([ceq.Inequality(_x0(), bound=-1.0), ceq.Inequality(_x0(), lower=1.0)], check_finite=False)
    with forbid_host_reads():
        for _ in range(FIRST_VERDICT):  # two windows close inside the audited block
            solver.step()
    assert {v.verdict for v in solver.feasibility().values()} == {INFEASIBLE}


def test_the_verdict_survives_a_checkpoint():
    solver = _solver([ceq.Inequality(_x0(), bound=-1.0), ceq.Inequality(_x0(), lower=1.0)])
    _run(solver, 1000)
    other = _solver([ceq.Inequality(_x0(), bound=-1.0), ceq.Inequality(_x0(), lower=1.0)])
    other.load_state_dict(solver.state_dict())
    assert {v.verdict for v in _run(other, FIRST_VERDICT - 1000).values()} == {INFEASIBLE}


@settings(max_examples=40, deadline=None)
@given(v=st.floats(-3, 3), eta=st.floats(1e-3, 1.0), lam0=st.floats(0, 5), equality=st.booleans())
def test_monitor_on_exact_dual_ascent_with_a_constant_violation(v, eta, lam0, equality):
    # λ_t = λ_0 + η t v (for inequalities projected on λ ≥ 0): flagged iff the constraint is violated.
    assume(abs(abs(v) - 1e-3) > 1e-9)  # not on the tolerance itself
    monitor = FeasibilityMonitor({"c": equality}, {"c": eta}, min_window=8, max_window=16)
    lam = torch.tensor([lam0], dtype=torch.float64)
    for _ in range(8 + 16):
        lam = lam + eta * v if equality else torch.clamp(lam + eta * v, min=0.0)
        monitor.update({"c": torch.tensor([v], dtype=torch.float64)}, {"c": lam})
    verdict = monitor.verdicts()["c"]
    violated = abs(v) > 1e-3 if equality else v > 1e-3
    if violated:
        assert verdict.verdict == INFEASIBLE, verdict
        assert verdict.rate[0] == pytest.approx(eta * v, rel=1e-9)
    else:
        assert verdict.verdict == FEASIBLE, verdict


@settings(max_examples=40, deadline=None)
@given(v0=st.floats(0.01, 3), decay=st.floats(0.5, 0.99), eta=st.floats(1e-3, 1.0))
def test_monitor_never_flags_a_violation_that_decays(v0, decay, eta):
    # A feasible problem converging: v_t = v0·decay^t, λ rising to its limit.
    monitor = FeasibilityMonitor({"c": False}, {"c": eta}, min_window=8, max_window=16)
    lam = torch.zeros(1, dtype=torch.float64)
    for t in range(200):
        v = torch.tensor([v0 * decay**t], dtype=torch.float64)
        lam = lam + eta * v
        monitor.update({"c": v}, {"c": lam})
        if t >= 24:
            assert monitor.verdicts()["c"].verdict != INFEASIBLE


def test_fit_warns_once_naming_the_constraint_and_ceq_report_prints_the_verdict(tmp_path, capsys):
    solver = _solver([ceq.Inequality(_x0(), bound=-1.0), ceq.Inequality(_x0(), lower=1.0, name="x0 ≥ 1 / lower side")])
    loader = [None] * 800
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ceq.fit(solver, loader, epochs=3, run_dir=tmp_path / "run", progress=False, plot=False)
    messages = [str(w.message) for w in caught if "likely infeasible" in str(w.message)]
    assert len(messages) == 1
    assert messages[0].startswith("epoch 1: constraint 'inequality_x0' is likely infeasible")
    assert "constraint 'x0 ≥ 1 / lower side' is likely infeasible" in messages[0] and "formulation 'resilient'" in messages[0]
    import json

    summary = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert summary["feasibility"]["x0 ≥ 1 / lower side"]["verdict"] == INFEASIBLE
    from constrained_eq.run.cli import main

    capsys.readouterr()
    assert main(["report", str(tmp_path / "run")]) == 0
    printed = [line for line in capsys.readouterr().out.splitlines() if line.startswith("feasibility: ")]
    assert printed[0].startswith("feasibility: constraint 'inequality_x0' is likely infeasible: entry 0: mean violation")
    assert printed[1].startswith("feasibility: constraint 'x0 ≥ 1 / lower side' is likely infeasible")
    assert "formulation 'resilient'" in printed[-1]
