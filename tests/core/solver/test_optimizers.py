"""Primal optimizers: several at once, by name, their extrapolation counterparts; steps without a batch."""

import cooper
import pytest
import torch

import constrained_eq as ceq
from constrained_eq.testing.toy_problems import VectorModel


class TwoBlocks(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.a = torch.nn.Parameter(torch.tensor([1.0, -2.0], dtype=torch.float64))
        self.b = torch.nn.Parameter(torch.tensor([0.5, 3.0], dtype=torch.float64))

    def forward(self, batch=None):
        return torch.cat([self.a, self.b])


def _problem():
    x = ceq.Target(lambda m, b, o: m.a[:1] + m.b[:1], "a0 + b0", needs_batch=False)
    return ceq.ConstrainedProblem(lambda out, batch: 0.5 * out.pow(2).sum(), [ceq.Equality(x, value=1.0)])


def test_several_primal_optimizers_each_step_their_block():
    model = TwoBlocks()
    sgd, adam = torch.optim.SGD([model.a], lr=0.1), torch.optim.Adam([model.b], lr=0.01)
    solver = ceq.Solver(_problem(), model, "lagrangian", [sgd, adam], dual_lr=0.5)
    assert solver.optimizer.primal_optimizers == [sgd, adam]
    with torch.no_grad():
        next(solver.cmp.dual_parameters()).fill_(2.0)
    a0, b0 = model.a.detach().clone(), model.b.detach().clone()
    record = solver.step()
    # ∇_a = a + λ e₀ (plain SGD);  Adam's first step moves every entry of b by lr·sign(grad)
    torch.testing.assert_close(model.a.detach(), a0 - 0.1 * (a0 + torch.tensor([2.0, 0.0], dtype=torch.float64)))
    grad_b = b0 + torch.tensor([2.0, 0.0], dtype=torch.float64)
    torch.testing.assert_close(model.b.detach(), b0 - 0.01 * torch.sign(grad_b), atol=1e-9, rtol=0)
    torch.testing.assert_close(record.multipliers["equality_a0 + b0"],
                               torch.tensor([2.0 + 0.5 * (a0[0] + b0[0] - 1.0).item()], dtype=torch.float64))


def test_a_parameter_in_two_optimizers_is_refused():
    model = TwoBlocks()
    with pytest.raises(ValueError, match=r"Solver: a parameter of shape \(2,\) is in both 'primal_optimizer\[0\]' and "
                                         r"'primal_optimizer\[1\]'; give each parameter to one optimizer"):
        ceq.Solver(_problem(), model, "lagrangian", [torch.optim.SGD(model.parameters(), lr=0.1),
                                                     torch.optim.SGD([model.b], lr=0.1)])
    with pytest.raises(TypeError, match=r"expected 'primal_optimizer\[1\]' to be a torch.optim.Optimizer \(got str\)"):
        ceq.Solver(_problem(), model, "lagrangian", [torch.optim.SGD([model.a], lr=0.1), "adam"])


@pytest.mark.parametrize(("given", "expected"), [
    ("adam", cooper.optim.ExtraAdam),
    ("sgd", cooper.optim.ExtraSGD),
    (None, cooper.optim.ExtraAdam),
    (lambda params: torch.optim.SGD(params, lr=0.2, momentum=0.5), cooper.optim.ExtraSGD),
])
def test_extrapolation_picks_the_counterpart_of_a_named_or_built_optimizer(given, expected):
    model = VectorModel(2, torch.ones(2, dtype=torch.float64))
    x = ceq.Target(lambda m, b, o: m.x, "x", needs_batch=False)
    problem = ceq.ConstrainedProblem(lambda out, batch: out.pow(2).sum(), [ceq.Inequality(x, lower=0.5)])
    solver = ceq.Solver(problem, model, "lagrangian", given, 0.1, primal_lr=0.05,
                        constrained_optimizer="extrapolation")
    (primal,) = solver.optimizer.primal_optimizers
    assert type(primal) is expected
    if callable(given):
        assert primal.param_groups[0]["lr"] == 0.2 and primal.param_groups[0]["momentum"] == 0.5
    for _ in range(300):
        solver.step()
    torch.testing.assert_close(model.x.detach(), torch.full((2,), 0.5, dtype=torch.float64), atol=1e-3, rtol=0)


def test_extrapolation_refuses_an_instance_that_cannot_extrapolate_and_names_the_fix():
    model = VectorModel(2)
    x = ceq.Target(lambda m, b, o: m.x, "x", needs_batch=False)
    problem = ceq.ConstrainedProblem(lambda out, batch: out.pow(2).sum(), [ceq.Inequality(x, lower=0.5)])
    with pytest.raises(ValueError, match=r"^Solver: constrained_optimizer='extrapolation' needs extrapolation-capable "
                                         r"optimizers, but 'primal_optimizer' is an instance of Adam; pass "
                                         r"cooper.optim.ExtraAdam\(...\), or a name \('adam', 'sgd'\) or a factory"):
        ceq.Solver(problem, model, "lagrangian", torch.optim.Adam(model.parameters()),
                   constrained_optimizer="extrapolation")
    with pytest.raises(ValueError, match=r"AdamW has no counterpart in Cooper \(ExtraSGD, ExtraAdam\); use 'sgd' or "
                                         r"'adam'"):
        ceq.Solver(problem, model, "lagrangian", "adamw", constrained_optimizer="extrapolation")


def test_a_problem_file_with_extrapolation_and_a_named_optimizer_builds(tmp_path):
    from pathlib import Path

    from constrained_eq.run.build import build
    from constrained_eq.run.problem_file import load_problem_file

    text = (Path(__file__).resolve().parents[3] / "problems" / "fpr.yaml").read_text()
    path = tmp_path / "p.yaml"
    path.write_text(text.replace("n_train: 2000", "n_train: 200") + "constrained_optimizer: extrapolation\n")
    solver = build(load_problem_file(path)).solver
    assert solver.scheme == "extrapolation"
    assert [type(o) for o in solver.optimizer.primal_optimizers] == [cooper.optim.ExtraSGD]
    assert type(solver.optimizer.dual_optimizers[0]) is cooper.optim.ExtraSGD


def test_step_without_a_batch_when_nothing_reads_one():
    model = TwoBlocks()
    solver = ceq.Solver(_problem(), model, "lagrangian", torch.optim.SGD(model.parameters(), lr=0.1))
    assert solver.step().step == 0 and solver.step().step == 1


def test_step_without_a_batch_says_so_when_something_reads_it():
    model = VectorModel(2)
    note = "Solver.step() was called without a batch; pass one if the objective or a target reads it"
    reads = ceq.Target(lambda m, b, o: m.x * b[0], "x times the batch")
    problem = ceq.ConstrainedProblem(lambda out, batch: out.sum(), [ceq.Equality(reads)])
    solver = ceq.Solver(problem, model, "lagrangian", torch.optim.SGD(model.parameters(), lr=0.1),
                        example_batch=torch.ones(1))
    before = {k: v.clone() for k, v in solver.state_dict()["model"].items()}
    for call in (solver.step, lambda: solver.step(None)):
        with pytest.raises(TypeError, match=r"^Solver\.step\(\) was called without a batch, but the targets of the "
                                            r"constraints \['equality_x times the batch'\] read it; pass one: "
                                            r"solver\.step\(batch\)$"):
            call()
    assert solver.step_count == 0  # refused before any work: no step taken, nothing moved
    assert all(torch.equal(v, before[k]) for k, v in solver.state_dict()["model"].items())
    assert solver.step(torch.ones(1)).step == 0
    objective_reads = ceq.ConstrainedProblem(lambda out, batch: (out - batch[1]).sum(), [])
    solver = ceq.Solver(objective_reads, model, "none", torch.optim.SGD(model.parameters(), lr=0.1))
    with pytest.raises(TypeError) as err:
        solver.step()
    assert note in err.value.__notes__
    assert solver.step((None, torch.zeros(2))).step == 0  # with a batch it steps


def test_problem_file_optimizer_groups_give_blocks_their_own_optimizer_and_settings(tmp_path):
    from pathlib import Path

    from constrained_eq.run.build import build
    from constrained_eq.run.problem_file import load_problem_file
    from constrained_eq.run.problem_yaml import ProblemFileError

    text = (Path(__file__).resolve().parents[3] / "problems" / "fpr.yaml").read_text()
    text = text.replace("n_train: 2000", "n_train: 200").replace(
        "  lr: 0.1\n", "  lr: 0.1\n  groups:\n    - params: 'net.0.*'\n      name: adam\n      lr: 0.01\n"
                       "    - params: '*.bias'\n      lr: 0.5\n")
    path = tmp_path / "p.yaml"
    path.write_text(text)
    built = build(load_problem_file(path))
    sgd, adam = built.solver.optimizer.primal_optimizers
    names = {id(p): n for n, p in built.model.named_parameters()}
    assert type(sgd) is torch.optim.SGD and type(adam) is torch.optim.Adam
    assert [g["lr"] for g in sgd.param_groups] == [0.1, 0.5] and adam.param_groups[0]["lr"] == 0.01
    assert all(names[id(p)].startswith("net.0.") for p in adam.param_groups[0]["params"])
    assert all(names[id(p)].endswith(".bias") and not names[id(p)].startswith("net.0.")
               for p in sgd.param_groups[1]["params"])
    assert len(names) == sum(len(g["params"]) for o in (sgd, adam) for g in o.param_groups)
    path.write_text(text.replace("'*.bias'", "'head.*'"))
    line = text.splitlines().index("  groups:") + 1
    with pytest.raises(ProblemFileError, match=rf"p.yaml:{line}: Expected 'optimizer.groups\[1\].params' to match a "
                                               r"parameter name such as 'net.0.weight' \(got 'head.\*'\)"):
        build(load_problem_file(path))
    path.write_text(text.replace("lr: 0.5", "lr: -1"))
    with pytest.raises(ProblemFileError, match=rf"p.yaml:{line + 5}: Expected 'optimizer.groups\[1\].lr' to be null "
                                               r"or a number > 0 \(got -1\)"):
        load_problem_file(path)
