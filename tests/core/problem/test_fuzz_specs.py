"""Malformed Python specifications are refused before any training, with the field named.

Each case must raise ValueError or TypeError (never another exception, never a bare traceback
from deep inside torch or Cooper) and the message must name the offending field.
"""

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import constrained_eq as ceq
from constrained_eq.testing.toy_problems import VectorModel


class Relaxed(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.layer = ceq.HomotopicLayer(torch.nn.Identity(), ceq.LinearBranch(3, 3))

    def forward(self, x):
        return self.layer(x)


def _loss(out, batch):
    return out.pow(2).mean()


def _problem(*constraints):
    return ceq.ConstrainedProblem(_loss, list(constraints))


def _solver(**kwargs):
    problem = kwargs.pop("problem", _problem(ceq.Equality(ceq.gammas)))
    model = kwargs.pop("model", Relaxed())
    return ceq.Solver(problem, model, **kwargs)


wide_target = ceq.Target(lambda m, b, o: torch.zeros(2, 2), "wide", needs_batch=False)
int_target = ceq.Target(lambda m, b, o: torch.zeros(2, dtype=torch.int32), "ints", needs_batch=False)
list_target = ceq.Target(lambda m, b, o: [0.0, 1.0], "listy", needs_batch=False)
batch_target = ceq.Target(lambda m, b, o: o.mean().reshape(1), "needs_batch")

CASES = [
    # (builder, exception, field named in the message)
    (lambda: ceq.Inequality("gammas", lower=0.5, bound=-0.5), ValueError, "bound"),
    (lambda: ceq.Inequality("gammas", bound=float("nan")), ValueError, "bound"),
    (lambda: ceq.Inequality("gammas", bound=float("inf")), ValueError, "bound"),
    (lambda: ceq.Inequality("gammas", bound="0.1"), TypeError, "bound"),
    (lambda: ceq.Inequality("gammas", bound=True), TypeError, "bound"),
    (lambda: ceq.Resilient("gammas", rho=0.0), ValueError, "rho"),
    (lambda: ceq.Resilient("gammas", rho=-1.0), ValueError, "rho"),
    (lambda: ceq.Resilient("gammas", rho=float("nan")), ValueError, "rho"),
    (lambda: ceq.Resilient("gammas", rho=None), TypeError, "rho"),
    (lambda: ceq.Resilient("gammas", slack_init=-0.1), ValueError, "slack_init"),
    (lambda: ceq.Penalty("gammas", weight=-1.0), ValueError, "weight"),
    (lambda: ceq.Penalty("gammas", weight=[0.1]), TypeError, "weight"),
    (lambda: ceq.Equality("not_registered"), ValueError, "target"),
    (lambda: ceq.Equality(42), TypeError, "target"),
    (lambda: ceq.Equality(None), TypeError, "target"),
    (lambda: ceq.Equality("gammas", name=" "), ValueError, "name"),
    (lambda: ceq.Target(lambda m, b, o: None, ""), ValueError, "name"),
    (lambda: ceq.Target("not callable", "t"), TypeError, "fn"),
    (lambda: ceq.ConstrainedProblem(None), TypeError, "objective"),
    (lambda: ceq.ConstrainedProblem(_loss, "gammas"), TypeError, "constraints"),
    (lambda: ceq.ConstrainedProblem(_loss, [ceq.gammas]), TypeError, "constraints[0]"),
    (lambda: ceq.ConstrainedProblem(_loss, [ceq.Equality("gammas"), ceq.Equality("gammas")]), ValueError, "listed twice"),
    (lambda: ceq.ConstrainedProblem(_loss, [ceq.Equality("gammas", name="c"), ceq.Penalty("gammas", name="c")]),
     ValueError, "name"),
    (lambda: ceq.Objective("mse"), TypeError, "loss"),
    (lambda: ceq.Objective(_loss, forward=3), TypeError, "forward"),
    (lambda: _solver(problem="problem"), TypeError, "problem"),
    (lambda: _solver(model=lambda x: x), TypeError, "model"),
    (lambda: _solver(formulation="lagrange"), ValueError, "formulation"),
    (lambda: _solver(formulation=3), ValueError, "formulation"),
    (lambda: _solver(formulation="resilient", rho=0), ValueError, "rho"),
    (lambda: _solver(formulation="schedule"), ValueError, "epochs"),
    (lambda: _solver(formulation="schedule", epochs=-3), ValueError, "epochs"),
    (lambda: _solver(formulation="augmented_lagrangian", penalty_coefficient=-1), ValueError, "penalty_coefficient"),
    (lambda: _solver(formulation="penalty", coefficient=float("inf")), ValueError, "coefficient"),
    (lambda: _solver(formulation="lagrangian", rho=1.0), TypeError, "'rho'"),  # an unknown keyword, as in Python
    (lambda: _solver(dual_lr=-1e-3), ValueError, "dual_lr"),
    (lambda: _solver(dual_lr=float("nan")), ValueError, "dual_lr"),
    (lambda: _solver(dual_lr="1e-3"), ValueError, "dual_lr"),
    (lambda: _solver(constrained_optimizer="sgda"), ValueError, "constrained_optimizer"),
    (lambda: _solver(variable_optimizer="adamw"), ValueError, "variable_optimizer"),
    (lambda: _solver(variable_lr=-0.1), ValueError, "variable_lr"),
    (lambda: _solver(dual_every=0), ValueError, "dual_every"),
    (lambda: _solver(on_nonfinite="warn"), ValueError, "on_nonfinite"),
    (lambda: _solver(primal_optimizer=0.1), TypeError, "primal_optimizer"),
    (lambda: _solver(dual_optimizer=torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)), TypeError,
     "dual_optimizer"),
    (lambda: _solver(dual_optimizer=lambda ps: torch.optim.Adam(ps, lr=0.1)), ValueError, "maximize=True"),
    (lambda: _solver(constrained_optimizer="extrapolation", primal_optimizer=lambda ps: torch.optim.AdamW(ps)),
     ValueError, "extrapolation"),
    (lambda: _solver(problem=_problem(ceq.Equality(wide_target))), ValueError, "wide"),
    (lambda: _solver(problem=_problem(ceq.Equality(int_target))), ValueError, "ints"),
    (lambda: _solver(problem=_problem(ceq.Equality(list_target))), ValueError, "listy"),
    (lambda: _solver(problem=_problem(ceq.Inequality(batch_target, bound=1.0))), ValueError, "example_batch"),
    (lambda: _solver(model=torch.nn.Linear(3, 3)), ValueError, "HomotopicLayer"),
]


@pytest.mark.parametrize(("build", "error", "field"), CASES, ids=[f"case{i}" for i in range(len(CASES))])
def test_malformed_spec_is_rejected_naming_the_field(build, error, field):
    with pytest.raises(error) as excinfo:
        build()
    assert field in str(excinfo.value)


def test_there_are_at_least_thirty_distinct_cases():
    assert len(CASES) >= 30


bad_numbers = st.one_of(
    st.floats(max_value=-1e-9, allow_nan=False, allow_infinity=False),
    st.just(math.nan),
    st.just(math.inf),
    st.just(-math.inf),
)
wrong_types = st.one_of(st.text(max_size=3), st.lists(st.floats(), max_size=2), st.none(), st.booleans())


@given(value=st.one_of(bad_numbers, wrong_types))
def test_any_bad_rho_is_rejected_before_training(value):
    with pytest.raises((ValueError, TypeError), match="rho"):
        ceq.Resilient("gammas", rho=value)


@given(value=st.one_of(bad_numbers, wrong_types, st.just(0.0)))
def test_any_bad_dual_lr_is_rejected_before_training(value):
    model = VectorModel(1)
    problem = ceq.ConstrainedProblem(_loss, [ceq.Equality(ceq.Target(lambda m, b, o: m.x, "x", needs_batch=False))])
    with pytest.raises(ValueError, match="dual_lr"):
        ceq.Solver(problem, model, dual_lr=value)


@given(name=st.text(min_size=1, max_size=8).filter(lambda s: s not in ceq.resolve_formulation.__globals__["FORMULATIONS"]))
def test_any_unknown_formulation_name_lists_the_choices(name):
    with pytest.raises(ValueError, match="Expected 'formulation' to be one of 'lagrangian'"):
        ceq.resolve_formulation(name)
