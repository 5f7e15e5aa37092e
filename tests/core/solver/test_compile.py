"""``Solver(compile=True)``: the compiled step follows the eager step's trajectory to float tolerance.

The unmarked tests trace with the ``aot_eager`` backend (dynamo + AOTAutograd, no code generation:
the graphs, the backward and the optimizer steps are those inductor compiles, in a second); the
``slow`` ones use inductor, which needs a C++ compiler on CPU and takes tens of seconds to compile.
"""

from __future__ import annotations

import copy
import shutil

import pytest
import torch
import torch.nn.functional as F
from _toy import TOY_LAGRANGIAN, RelaxedMLP

import constrained_eq as ceq
from constrained_eq.core.solver import compiled
from constrained_eq.run.build import build
from constrained_eq.run.problem_file import load_problem_file
from constrained_eq.run.problem_yaml import ProblemFileError


@pytest.fixture
def aot_eager(monkeypatch):
    monkeypatch.setattr(compiled, "BACKEND", "aot_eager")


def _inductor_or_skip() -> None:
    if not any(shutil.which(c) for c in ("g++", "c++", "clang++")):
        pytest.skip("inductor needs a C++ compiler on CPU: none of g++, c++, clang++ is on PATH")


def _solver(base, compile, formulation="lagrangian", **options):
    model = copy.deepcopy(base)
    objective = ceq.Objective(lambda out, b: F.mse_loss(out, b[1]), lambda m, b: m(b[0]))
    problem = ceq.ConstrainedProblem(objective, [ceq.Equality(ceq.gammas)])
    return ceq.Solver(problem, model, formulation, torch.optim.Adam(model.parameters(), lr=1e-2), dual_lr=0.1,
                      variable_lr=0.1, compile=compile, **options)


def _assert_same_trajectory(formulation="lagrangian", steps=3, **options):
    torch.manual_seed(0)
    base = RelaxedMLP()
    batch = (torch.randn(16, 4), torch.randn(16, 2))
    eager, fast = _solver(base, False, formulation, **options), _solver(base, True, formulation, **options)
    for _ in range(steps):
        expected, got = eager.step(batch), fast.step(batch)
        torch.testing.assert_close(got.loss, expected.loss, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(got.lagrangian, expected.lagrangian, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(dict(fast.model.named_parameters()), dict(eager.model.named_parameters()),
                               rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(fast.multipliers(), eager.multipliers(), rtol=1e-5, atol=1e-6)
    assert fast.multipliers()["equality_gammas"].abs().sum() > 0  # the dual steps were taken
    return fast


def test_compiled_step_follows_the_eager_trajectory(aot_eager):
    fast = _assert_same_trajectory()
    assert isinstance(fast._roll, compiled.CompiledRoll)
    assert not any(k.startswith("_orig_mod") for k in fast.state_dict()["model"])  # the model is untouched


def test_compiled_step_keeps_inequality_multipliers_non_negative(aot_eager):
    # γ⁰ = 1 under the bound γ ≤ 10: the violation γ − 10 ≈ −9 would push λ below 0; projected ascent gives
    # λ = max(0, λ + η_d (γ − 10)) = max(0, −0.9) = 0, compiled as eager
    torch.manual_seed(0)
    base = RelaxedMLP(width=4, depth=1)
    batch = (torch.randn(8, 4), torch.randn(8, 2))
    solvers = []
    for compile in (False, True):
        model = copy.deepcopy(base)
        objective = ceq.Objective(lambda out, b: F.mse_loss(out, b[1]), lambda m, b: m(b[0]))
        problem = ceq.ConstrainedProblem(objective, [ceq.Equality(ceq.gammas), ceq.Inequality(ceq.gammas, bound=10.0)])
        solver = ceq.Solver(problem, model, "lagrangian", torch.optim.Adam(model.parameters(), lr=1e-2), dual_lr=0.1,
                            variable_lr=0.1, compile=compile)
        record = solver.step(batch)
        assert bool((record.violations["inequality_gammas"] < -8).all())
        solvers.append(solver)
    eager, fast = solvers
    assert isinstance(fast._roll, compiled.CompiledRoll)
    lam = fast.multipliers()["inequality_gammas"]
    assert torch.equal(lam, torch.zeros_like(lam))
    torch.testing.assert_close(fast.multipliers(), eager.multipliers(), rtol=1e-5, atol=1e-6)


def test_compiled_step_refuses_a_non_finite_loss_and_leaves_the_state(aot_eager):
    torch.manual_seed(0)
    solver = _solver(RelaxedMLP(), True)
    before = {k: v.clone() for k, v in solver.model.state_dict().items()}
    with pytest.raises(ceq.NonFiniteError, match="objective"):
        solver.step((torch.full((4, 4), float("nan")), torch.zeros(4, 2)))
    torch.testing.assert_close(solver.model.state_dict(), before)


def test_compile_must_be_a_bool():
    with pytest.raises(TypeError, match="'compile' to be True or False"):
        _solver(RelaxedMLP(), "yes")


def test_tensor_learning_rates_keep_their_value():
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(2))], lr=0.5)
    compiled.tensor_learning_rates_([optimizer])
    assert isinstance(optimizer.param_groups[0]["lr"], torch.Tensor) and float(optimizer.param_groups[0]["lr"]) == 0.5


def test_problem_file_compile_reaches_the_solver(tmp_path, aot_eager):
    path = tmp_path / "toy.yaml"
    path.write_text(TOY_LAGRANGIAN.replace("  epochs: 2\n", "  epochs: 2\n  compile: true\n"))
    spec = load_problem_file(path)
    assert spec["training"]["compile"] is True
    assert build(spec).solver.compile is True
    path.write_text(TOY_LAGRANGIAN)
    assert "compile" not in load_problem_file(path)["training"]  # absent: existing runs keep their hash


def test_problem_file_refuses_a_non_bool_compile(tmp_path):
    path = tmp_path / "toy.yaml"
    path.write_text(TOY_LAGRANGIAN.replace("  epochs: 2\n", "  epochs: 2\n  compile: \"yes\"\n"))
    with pytest.raises(ProblemFileError, match=r"Expected 'training.compile' to be true or false \(got 'yes'\)"):
        load_problem_file(path)


@pytest.mark.slow
@pytest.mark.parametrize("formulation", ["lagrangian", "augmented_lagrangian"])
@pytest.mark.parametrize("check_finite", [True, False])
def test_inductor_step_follows_the_eager_trajectory(formulation, check_finite):
    _inductor_or_skip()
    _assert_same_trajectory(formulation, steps=5, check_finite=check_finite)


@pytest.mark.slow
def test_inductor_alternating_scheme_compiles_the_evaluations():
    _inductor_or_skip()
    fast = _assert_same_trajectory(constrained_optimizer="alternating_primal_dual")
    assert fast._roll is None and isinstance(fast.cmp.compute_cmp_state, compiled._CompiledEvaluations)
