import pytest
import torch

import constrained_eq as ceq


def test_problem_keeps_constraints_in_order_and_names_them():
    problem = ceq.ConstrainedProblem(
        lambda out, batch: out.sum(), [ceq.Equality("gammas"), ceq.Inequality("gammas", bound=0.1, name="small")]
    )
    assert [name for name, _ in problem.named_constraints()] == ["equality_gammas", "small"]
    assert isinstance(problem.objective, ceq.Objective)


def test_a_constraint_listed_twice_is_rejected():
    with pytest.raises(ValueError, match=r"constraint Equality\(target=gammas\) is listed twice \(name 'equality_gammas'\)"):
        ceq.ConstrainedProblem(lambda out, batch: out.sum(), [ceq.Equality("gammas"), ceq.Equality("gammas")])


def test_two_constraints_with_one_name_are_rejected():
    with pytest.raises(ValueError, match=r"shares its name with another \(name 'g'\).*distinct name="):
        ceq.ConstrainedProblem(
            lambda out, batch: out.sum(),
            [ceq.Equality("gammas", name="g"), ceq.Inequality("gammas", bound=1.0, name="g")],
        )


def test_non_constraints_and_non_callables_are_type_errors():
    with pytest.raises(TypeError, match=r"expected 'constraints\[0\]' to be an Equality, Inequality, Resilient"):
        ceq.ConstrainedProblem(lambda out, batch: out.sum(), ["gammas"])
    with pytest.raises(TypeError, match=r"expected 'objective' to be an Objective or a callable"):
        ceq.ConstrainedProblem(3.0, [])


def test_default_forward_unpacks_pairs():
    model = torch.nn.Identity()
    objective = ceq.Objective(lambda out, batch: (out - batch[1]).pow(2).mean())
    x = torch.ones(3)
    assert torch.equal(objective.forward(model, (x, x)), x)
    assert torch.equal(objective.forward(model, x), x)
