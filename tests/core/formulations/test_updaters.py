"""Penalty-coefficient updaters by name (Cooper's multiplicative and additive rules), float64."""

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import constrained_eq as ceq
from constrained_eq.core.formulations import resolve_formulation
from constrained_eq.core.formulations.updaters import AdditiveUpdater, MultiplicativeUpdater, resolve_penalty_updater
from constrained_eq.testing.toy_problems import VectorModel


def _solver(x0, constraint, formulation, lr=0.1, **options):
    x = ceq.Target(lambda m, b, o: m.x, "x", needs_batch=False)
    problem = ceq.ConstrainedProblem(lambda out, batch: 0.5 * (out - 1.0).pow(2).sum(), [constraint(x)])
    model = VectorModel(len(x0), torch.tensor(x0, dtype=torch.float64))
    solver = ceq.Solver(problem, model, formulation, torch.optim.SGD(model.parameters(), lr=lr), 0.1, **options)
    return solver, model


@given(x0=st.lists(st.floats(-2, 2), min_size=1, max_size=4), beta=st.floats(1.001, 3), c0=st.floats(0.1, 5),
       formulation=st.sampled_from(["penalty", "augmented_lagrangian"]))
def test_multiplicative_rule_grows_violated_entries_and_restarts_satisfied_ones(x0, beta, c0, formulation):
    key = "coefficient" if formulation == "penalty" else "penalty_coefficient"
    solver, _ = _solver(x0, lambda x: ceq.Inequality(x, bound=0.5), formulation,
                        **{key: c0, "penalty_updater": {"name": "multiplicative", "growth_factor": beta}})
    solver.step()
    violation = torch.tensor(x0, dtype=torch.float64) - 0.5
    expected = torch.where(violation > 1e-4, torch.full_like(violation, c0 * beta), torch.full_like(violation, c0))
    torch.testing.assert_close(solver.penalty_coefficients()["inequality_x"], expected, rtol=1e-12, atol=0)


@given(x0=st.lists(st.floats(-2, 2), min_size=1, max_size=4), delta=st.floats(0.01, 3), tol=st.floats(0, 0.5))
def test_additive_rule_on_an_equality_compares_the_absolute_violation(x0, delta, tol):
    updater = {"name": "additive", "increment": delta, "violation_tolerance": tol}
    solver, _ = _solver(x0, lambda x: ceq.Equality(x, value=0.25), "augmented_lagrangian", penalty_updater=updater)
    for step in range(2):
        before = solver.penalty_coefficients()["equality_x"]
        violation = solver.step().violations["equality_x"]
        grown = torch.where(violation.abs() > tol, before + delta, before)
        torch.testing.assert_close(solver.penalty_coefficients()["equality_x"], grown, rtol=1e-12, atol=0, msg=str(step))


@pytest.mark.parametrize("formulation", ["penalty", "augmented_lagrangian"])
@pytest.mark.parametrize("name, grown", [("multiplicative", 2.0 * 3.0), ("additive", 2.0 + 3.0)])
@pytest.mark.parametrize("restart", [True, False])
def test_a_satisfied_inequality_entry_returns_to_its_initial_coefficient_only_with_restart(formulation, name, grown,
                                                                                          restart):
    # step 1 at x = (2, 2): both entries violate x ≤ 0.5, c = 2 grows to 2·β (β = 3) or 2 + δ (δ = 3); step 2 at
    # x = (0, 2): entry 0 is satisfied, so it restarts at c₀ = 2 (has_restart) or keeps its coefficient
    key = "coefficient" if formulation == "penalty" else "penalty_coefficient"
    option = {"multiplicative": "growth_factor", "additive": "increment"}[name]
    updater = {"name": name, option: 3.0, "has_restart": restart}
    solver, model = _solver([2.0, 2.0], lambda x: ceq.Inequality(x, bound=0.5), formulation,
                            **{key: 2.0, "penalty_updater": updater})
    solver.step()
    torch.testing.assert_close(solver.penalty_coefficients()["inequality_x"],
                               torch.tensor([grown, grown], dtype=torch.float64), rtol=1e-12, atol=0)
    with torch.no_grad():
        model.x.copy_(torch.tensor([0.0, 2.0], dtype=torch.float64))
    solver.step()
    second = grown * 3.0 if name == "multiplicative" else grown + 3.0  # entry 1 is still violated
    expected = torch.tensor([2.0 if restart else grown, second], dtype=torch.float64)
    torch.testing.assert_close(solver.penalty_coefficients()["inequality_x"], expected, rtol=1e-12, atol=0)


def test_fixed_penalty_stays_infeasible_and_the_growing_one_converges():
    # min ½(x − 1)² s.t. x ≤ 0: a fixed c leaves x = 1/(1 + c); a growing c drives x under the tolerance.
    constraint = lambda x: ceq.Inequality(x, bound=0.0)  # noqa: E731
    fixed, fixed_model = _solver([0.0], constraint, "penalty", lr=5e-3)
    grown, grown_model = _solver([0.0], constraint, "penalty", lr=5e-3,
                                 penalty_updater={"name": "multiplicative", "growth_factor": 1.01,
                                                  "violation_tolerance": 1e-2})
    for _ in range(3000):
        fixed.step()
        grown.step()
    assert fixed_model.x.item() == pytest.approx(0.5, abs=1e-6)  # 1/(1 + 1): infeasible for ever
    c = grown.penalty_coefficients()["inequality_x"].item()
    assert 99.0 <= c <= 1.01 * 100.0  # it stopped growing at the first c with 1/(1 + c) ≤ 1e-2
    assert grown_model.x.item() == pytest.approx(1.0 / (1.0 + c), abs=1e-9)
    assert grown_model.x.item() <= 1e-2


def test_updater_state_survives_a_checkpoint():
    solver, _ = _solver([2.0], lambda x: ceq.Equality(x), "augmented_lagrangian", penalty_updater="multiplicative")
    for _ in range(5):
        solver.step()
    state = solver.state_dict()
    other, _ = _solver([2.0], lambda x: ceq.Equality(x), "augmented_lagrangian", penalty_updater="multiplicative")
    other.load_state_dict(state)
    torch.testing.assert_close(other.penalty_coefficients()["equality_x"], torch.full((1,), 1.01**5,
                                                                                      dtype=torch.float64))


def test_reprs_and_names():
    formulation = resolve_formulation("penalty", coefficient=2.0, penalty_updater="additive")
    assert repr(formulation) == ("QuadraticPenalty(coefficient=2.0, penalty_updater={'name': 'additive', "
                                 "'violation_tolerance': 0.0001, 'has_restart': True, 'increment': 1.0})")
    assert resolve_penalty_updater({"name": "multiplicative", "growth_factor": 2}) == MultiplicativeUpdater(
        growth_factor=2.0)
    assert resolve_penalty_updater(AdditiveUpdater(increment=0.5)).increment == 0.5


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("geometric", r"Expected 'penalty_updater' to be one of 'multiplicative', 'additive', or a mapping"),
        ({"name": "multiplicative", "growth_factor": 1.0},
         r"'penalty_updater' of kind 'multiplicative': expected 'growth_factor' to be a finite number > 1 \(got 1.0\)"),
        ({"name": "additive", "increment": -1}, r"expected 'increment' to be a finite number > 0 \(got -1\)"),
        ({"name": "additive", "violation_tolerance": -1e-3}, r"expected 'violation_tolerance' to be a finite number ≥ 0"),
        ({"name": "additive", "growth_factor": 2.0},
         r"Expected the options of penalty_updater 'additive' to be among violation_tolerance, has_restart, "
         r"increment \(got 'growth_factor'\)"),
    ],
)
def test_bad_updaters_are_refused(spec, message):
    with pytest.raises(ValueError, match=message):
        resolve_formulation("augmented_lagrangian", penalty_updater=spec)


def test_a_problem_file_names_the_updater_and_a_bad_option_is_refused_at_its_line(tmp_path):
    from pathlib import Path

    from constrained_eq.run.build import build
    from constrained_eq.run.problem_file import load_problem_file
    from constrained_eq.run.problem_yaml import ProblemFileError

    text = (Path(__file__).resolve().parents[3] / "problems" / "fpr.yaml").read_text()
    text = text.replace("  name: lagrangian\n", "  name: augmented_lagrangian\n  options:\n    penalty_updater:\n"
                                                 "      name: multiplicative\n      growth_factor: 1.001\n")
    text = text.replace("n_train: 2000", "n_train: 200")
    path = tmp_path / "p.yaml"
    path.write_text(text)
    solver = build(load_problem_file(path)).solver
    assert solver.formulation.penalty_updater == MultiplicativeUpdater(growth_factor=1.001)
    assert solver.penalty_updater.growth_factor == 1.001
    path.write_text(text.replace("growth_factor: 1.001", "growth_factor: 0.5"))
    line = text.splitlines().index("    penalty_updater:") + 1
    with pytest.raises(ProblemFileError, match=rf"p.yaml:{line}: .*expected 'growth_factor' to be a finite number > 1"):
        load_problem_file(path)
