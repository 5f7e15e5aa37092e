import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import constrained_eq as ceq
from constrained_eq.core.problem.constraints import parse


def test_repr_round_trips_for_every_kind():
    for constraint in [
        ceq.Equality("gammas"),
        ceq.Inequality("gammas", bound=0.25),
        ceq.Resilient("gammas", rho=2.0),
        ceq.Resilient("gammas", rho=1.0, slack_init=0.5),
        ceq.Penalty("gammas", weight=0.01),
        ceq.Equality("gammas", name="gamma_zero"),
    ]:
        assert parse(repr(constraint)) == constraint


@given(rho=st.floats(1e-3, 1e3), bound=st.floats(0, 1e3))
def test_repr_round_trips_for_any_numbers(rho, bound):
    assert parse(repr(ceq.Resilient("gammas", rho=rho))) == ceq.Resilient("gammas", rho=rho)
    assert parse(repr(ceq.Inequality("gammas", bound=bound))) == ceq.Inequality("gammas", bound=bound)


def test_reprs_read_like_the_call():
    assert repr(ceq.Resilient(ceq.gammas, rho=1.0)) == "Resilient(target=gammas, rho=1.0)"
    assert repr(ceq.Inequality("gammas", bound=0.1)) == "Inequality(target=gammas, bound=0.1)"


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: ceq.Inequality("gammas", lower=1.0, bound=-1.0),
         r"Inequality: expected 'lower' ≤ 'bound' \(got lower 1.0 > bound -1.0 at entry 0\)"),
        (lambda: ceq.Inequality("gammas", lower=[0.0, 2.0], bound=[1.0, 1.0]),
         r"Inequality: expected 'lower' ≤ 'bound' \(got lower 2.0 > bound 1.0 at entry 1\)"),
        (lambda: ceq.Inequality("gammas", lower=[0.0, 2.0], bound=[1.0, 3.0, 4.0]),
         r"Inequality: expected 'lower' and 'bound' to have the same number of entries \(got 2 and 3\)"),
        (lambda: ceq.Inequality("gammas", bound=[0.0, float("inf")]),
         r"Inequality: expected 'bound\[1\]' to be finite \(got inf\)"),
        (lambda: ceq.Equality("gammas", value=[]), r"Equality: expected 'value' to be a number or a non-empty list"),
        (lambda: ceq.Inequality("gammas", bound=float("nan")), r"Inequality: expected 'bound' to be finite \(got nan\)"),
        (lambda: ceq.Resilient("gammas", rho=0.0), r"Resilient: expected 'rho' to be > 0 \(got 0.0\)"),
        (lambda: ceq.Resilient("gammas", rho=-2), r"Resilient: expected 'rho' to be > 0 \(got -2.0\)"),
        (lambda: ceq.Resilient("gammas", slack_init=-1.0), r"Resilient: expected 'slack_init' to be ≥ 0"),
        (lambda: ceq.Penalty("gammas", weight=-0.1), r"Penalty: expected 'weight' to be ≥ 0 \(got -0.1\)"),
        (lambda: ceq.Equality("no_such_target"), r"Expected 'target' to be one of .*'gammas'.* \(got 'no_such_target'\)"),
        (lambda: ceq.Equality("gammas", name="  "), r"Equality: expected 'name' to be a non-empty string"),
    ],
)
def test_bad_values_are_rejected_with_the_field_named(build, message):
    with pytest.raises(ValueError, match=message):
        build()


def test_wrong_kinds_are_type_errors():
    with pytest.raises(TypeError, match=r"Resilient: expected 'rho' to be a number \(got str\)"):
        ceq.Resilient("gammas", rho="1")
    with pytest.raises(TypeError, match=r"Expected 'target' to be a Target, a registered target name or a callable"):
        ceq.Equality(3)


def test_parse_rejects_unknown_kinds():
    with pytest.raises(ValueError, match=r"Unable to parse constraint 'Foo\(target=gammas\)'"):
        parse("Foo(target=gammas)")


def test_violation_maps():
    values = torch.tensor([-0.5, 0.25])
    slack = torch.tensor([0.1, 0.1])
    assert torch.equal(ceq.Equality("gammas").violation(values), values)
    assert torch.equal(ceq.Inequality("gammas", bound=0.25).violation(values), values - 0.25)
    assert torch.equal(ceq.Resilient("gammas").violation(values, slack), values.abs() - slack)


def test_register_target_refuses_a_different_target_under_a_taken_name():
    with pytest.raises(ValueError, match="A different target is already registered as 'gammas'"):
        ceq.register_target(ceq.Target(lambda m, b, o: torch.zeros(1), "gammas"))


def test_parse_reads_a_bare_name_as_a_string_for_name():
    parsed = parse("Inequality(target=spectral_norms, bound=1.5, name=first_l1)")
    assert parsed == ceq.Inequality(ceq.spectral_norms, bound=1.5, name="first_l1")
    assert parsed.name == "first_l1" and parsed.key == "first_l1"
    assert parse("Equality(gammas, name=tied)").key == "tied"  # the positional target too


@pytest.mark.parametrize(("text", "message"), [
    ("Inequality(target=gammas, bound=big)",
     "Unable to parse constraint 'Inequality(target=gammas, bound=big)': bound=big is not a number, a list of "
     "numbers or a quoted string; to give text, quote it: bound='big'"),
    ("Equality(target=gammas, name=first.layer)",
     "name=first.layer is not a number, a list of numbers or a quoted string; to give text, quote it: "
     "name='first.layer'"),
    ("Equality(gammas, target=gammas)", "Unable to parse constraint 'Equality(gammas, target=gammas)': 'target' is "
                                        "given twice"),
])
def test_parse_says_how_to_quote_a_bare_name_where_none_is_allowed(text, message):
    with pytest.raises(ValueError) as err:
        parse(text)
    assert message in str(err.value) and "ast." not in str(err.value)


def test_problem_file_entries_read_bare_names_the_same_way_for_every_kind():
    from constrained_eq.run.constraint_entries import parse_entry

    assert parse_entry("Inequality(target=spectral_norms, bound=1.5, name=first_l1)").key == "first_l1"
    lie = parse_entry("LieDerivative(weight=0.01, name=lie)")
    assert lie.key == "lie" and lie.weight == 0.01
    with pytest.raises(ValueError, match=r"weight=heavy is not a number, a list of numbers or a quoted string; to "
                                         r"give text, quote it: weight='heavy'"):
        parse_entry("LieDerivative(weight=heavy)")
    with pytest.raises(ValueError, match=r"Unable to parse constraint 'LieDerivative\(0.01\)': give every field by "
                                         r"name"):
        parse_entry("LieDerivative(0.01)")


def test_a_problem_file_constraint_with_an_unquoted_name_loads(tmp_path):
    from pathlib import Path

    from constrained_eq.run.constraint_entries import parse_entry
    from constrained_eq.run.problem_file import load_problem_file
    from constrained_eq.run.problem_yaml import ProblemFileError

    text = (Path(__file__).resolve().parents[3] / "problems" / "lipschitz.yaml").read_text()
    path = tmp_path / "p.yaml"
    path.write_text(text.replace("Inequality(target=spectral_norms, bound=1.0)",
                                 "Inequality(target=spectral_norms, bound=1.5, name=first_l1)"))
    (entry,) = load_problem_file(path)["constraints"]
    assert parse_entry(entry) == ceq.Inequality(ceq.spectral_norms, bound=1.5, name="first_l1")
    path.write_text(text.replace("bound=1.0)", "bound=one)"))
    with pytest.raises(ProblemFileError, match=r"p\.yaml:13: .*bound=one is not a number, a list of numbers or a "
                                               r"quoted string; to give text, quote it: bound='one'"):
        load_problem_file(path)
