"""Infeasibility told plainly: ``solver.feasibility()`` from the dual dynamics.

Infeasible problems at Cooper's step sizes (x⁰ = 1, primal SGD 3e-2, dual SGD 0.2/√n; min ‖x‖²):
x₀ ≤ −1 together with x₀ ≥ 1, and x₀ = 1 together with x₀ = −1. The feasible family of Cooper's
tests is checked in tests/core/solver/test_cooper_parity.py (never flagged).
"""

import math
import warnings

import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import constrained_eq as ceq
from constrained_eq.core.solver.feasibility import (
    FEASIBLE,
    INFEASIBLE,
    OSCILLATING,
    UNDECIDED,
    VIOLATED,
    FeasibilityMonitor,
    describe,
)
from constrained_eq.testing.sync_audit import forbid_host_reads
from constrained_eq.testing.toy_problems import VectorModel

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
                               "1,024 steps (steps 512–1,535), largest 1, violated on 100 % of them; λ moved +0.0894 "
                               "per step over steps 512–1,535, steadily (η_d·violation = +0.0894)")
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
        ceq.fit(solver, loader, epochs=3, run_dir=tmp_path / "run", progress=False)
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


# ---------------------------------------------------------------- verdicts over the latest steps (issue 28)
def _feed(monitor, values, equality=False):
    for v in values:
        monitor.update({"c": torch.tensor([v], dtype=torch.float64)}, {})
    return monitor.verdicts()["c"]


def test_a_blow_up_after_the_last_closed_window_changes_the_verdict():
    # Windows close at steps 512 and 1,536; the constraint held (v = −0.1) until step 1,599, then was violated by
    # 0.26. The recent span is the last 1,000 steps, 1,536–2,535: 64 steps of −0.1 and 936 of +0.26.
    verdict = _feed(FeasibilityMonitor({"c": False}), [-0.1] * 1600 + [0.26] * 936)
    assert verdict.verdict == VIOLATED and verdict.window == (1536, 2535)
    assert verdict.violation[0] == pytest.approx((64 * -0.1 + 936 * 0.26) / 1000)
    assert verdict.largest[0] == pytest.approx(0.26) and verdict.violated_fraction[0] == pytest.approx(0.936)
    assert verdict.evidence == ("entry 0: mean violation 0.237 over the last 1,000 steps (steps 1,536–2,535), largest "
                                "0.26, violated on 93.6 % of them, without the steady dual pattern of an infeasible "
                                "constraint")


def test_a_blow_up_in_the_last_three_steps_is_seen():
    # 3 violated steps of 979 are 0.3 % (≤ 1 %), but the last step is violated: not feasible.
    verdict = _feed(FeasibilityMonitor({"c": False}), [-0.1] * 2000 + [0.5] * 3)
    assert verdict.window == (1024, 2002) and verdict.verdict == VIOLATED
    assert verdict.violated_fraction[0] == pytest.approx(3 / 979)
    assert verdict.evidence.startswith("entry 0 is violated at the last step (0.5) though its mean violation")
    healed = _feed(FeasibilityMonitor({"c": False}), [-0.1] * 2000 + [0.5] * 3 + [-0.1])
    assert healed.verdict == FEASIBLE and healed.evidence == (
        "every entry held (violation ≤ 0.001) on at least 99.7 % of the last 980 steps (steps 1,024–2,003) and at "
        "the last step (largest violation 0.5)")


def test_an_iterate_that_swings_across_its_bound_is_oscillating_not_feasible():
    # Square wave of period 50: g − b = +0.02 on 19 steps, −0.02 on 31. Signed mean −0.0048 ≤ τ: the old rule
    # called it feasible. Over steps 1,000–1,999 it is violated on 380 of 1,000 steps and changes state 40 times.
    monitor = FeasibilityMonitor({"c": False}, recent=1000, block=50)
    verdict = _feed(monitor, [0.02 if t % 50 < 19 else -0.02 for t in range(2000)])
    assert verdict.verdict == OSCILLATING and verdict.window == (1000, 1999)
    assert verdict.violation[0] == pytest.approx(-0.0048) and verdict.violated_fraction[0] == pytest.approx(0.38)
    assert verdict.evidence == ("oscillating: entry 0 violated on 38 % of the last 1,000 steps (steps 1,000–1,999), "
                                "crossing the constraint 40 times (largest violation 0.02, mean -0.0048)")
    lines = describe({"c": verdict})
    assert lines[0] == f"constraint 'c' is {verdict.evidence}."
    assert "dual_optimizer 'nupi'" in lines[1] and "'augmented_lagrangian'" in lines[1] and "averaging" in lines[1]


def test_an_equality_held_only_on_average_is_oscillating():
    verdict = _feed(FeasibilityMonitor({"c": True}), [0.05 * (-1) ** t for t in range(1536)])
    assert verdict.violation[0] == pytest.approx(0.0) and verdict.violated_fraction[0] == 1.0
    assert verdict.verdict == OSCILLATING


def _oscillator(dual_optimizer=None):
    """max x s.t. x ≤ 1 by simultaneous GDA from x = 1, λ = 0: an orbit around (x*, λ*) = (1, 1) that grows."""
    x = ceq.Target(lambda m: m.x[:1], "x")
    problem = ceq.ConstrainedProblem(lambda out, batch: -out.sum(), [ceq.Inequality(x, bound=1.0, name="x ≤ 1")])
    model = VectorModel(1, torch.ones(1))
    options = {} if dual_optimizer is None else {"dual_optimizer": dual_optimizer}
    return ceq.Solver(problem, model, "lagrangian", torch.optim.SGD(model.parameters(), 0.05), 0.05, **options)


def test_an_oscillating_lagrangian_run_is_not_called_feasible_and_damping_fixes_it():
    solver = _oscillator()
    verdict = _run(solver, 2560)["x ≤ 1"]
    assert abs(verdict.violation[0]) <= 0.05  # the signed mean is small ...
    assert float(solver.model.x.detach()[0]) > 1.5  # ... but the final iterate violates x ≤ 1 by more than 0.5
    assert verdict.verdict == OSCILLATING and 0.3 < verdict.violated_fraction[0] < 0.7
    assert verdict.largest[0] > 0.5
    damped = _oscillator(ceq.NuPI(kappa_p=5.0))
    assert _run(damped, 2560)["x ≤ 1"].verdict == FEASIBLE
    assert float(damped.model.x.detach()[0]) == pytest.approx(1.0, abs=1e-3)


@settings(max_examples=60, deadline=None)
@given(values=st.lists(st.sampled_from([-0.5, -0.01, 0.0, 0.0005, 0.002, 0.3, -0.3]), min_size=24, max_size=90),
       equality=st.booleans(), recent=st.integers(4, 20), block=st.integers(1, 5))
def test_recent_statistics_are_those_of_the_latest_steps(values, equality, recent, block):
    assume(block <= recent)
    monitor = FeasibilityMonitor({"c": equality}, min_window=8, max_window=16, recent=recent, block=block)
    verdict = _feed(monitor, values)
    n = len(values)
    first, last = verdict.window
    assert last == n - 1 and first % block == 0
    assert recent - block + 1 <= last - first + 1 <= -(-recent // block) * block or first == 0
    span = torch.tensor(values[first:], dtype=torch.float64)
    positive = span.abs() if equality else span.clamp(min=0)
    assert verdict.violation[0] == pytest.approx(float(span.mean()))
    assert verdict.largest[0] == pytest.approx(float(positive.max()))
    fraction = float((positive > 1e-3).double().mean())
    assert verdict.violated_fraction[0] == pytest.approx(fraction)
    def state(v):
        return (v > 1e-3) - (equality and v < -1e-3)

    states = [state(values[first - 1]) if first > 0 else 0] + [state(v) for v in values[first:]]
    flips = sum(a != b for a, b in zip(states, states[1:], strict=False))
    if fraction <= 0.01 and positive[-1] <= 1e-3:
        assert verdict.verdict == FEASIBLE
    elif fraction > 0.01 and flips >= 4:
        assert verdict.verdict == OSCILLATING
    else:
        assert verdict.verdict == VIOLATED


def test_the_recent_span_survives_a_checkpoint_and_an_old_checkpoint_starts_it_again():
    values = [-0.1] * 1700 + [0.3] * 100
    whole = _feed(FeasibilityMonitor({"c": False}), values)
    first = FeasibilityMonitor({"c": False})
    _feed(first, values[:1650])
    resumed = FeasibilityMonitor({"c": False})
    resumed.load_state_dict(first.state_dict())
    assert _feed(resumed, values[1650:]) == whole
    old = {k: v for k, v in first.state_dict().items() if k != "recent"}  # written before the recent span existed
    legacy = FeasibilityMonitor({"c": False})
    legacy.load_state_dict(old)
    assert _feed(legacy, values[1650:]).window == (1650, 1799)
