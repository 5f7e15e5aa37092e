"""Python API: targets and objectives that cannot work are refused with their name and the expected shape/dtype."""

from __future__ import annotations

import pytest
import torch

import constrained_eq as ceq


class _Net(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(3, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x)


def _forward(model: torch.nn.Module, batch: torch.Tensor) -> torch.Tensor:
    return model(batch)


def _mse(output: torch.Tensor, batch: torch.Tensor) -> torch.Tensor:
    return output.pow(2).mean()


def _solver(target: ceq.Target, loss=_mse, kind=ceq.Equality, **kwargs) -> ceq.Solver:
    torch.manual_seed(0)
    model = _Net()
    problem = ceq.ConstrainedProblem(ceq.Objective(loss, _forward), [kind(target, **kwargs)])
    return ceq.Solver(problem, model, "lagrangian", torch.optim.SGD(model.parameters(), 0.1), 0.1,
                      example_batch=torch.randn(4, 3))


def test_a_target_no_parameter_moves_is_refused_by_name():
    frozen = ceq.Target(lambda model, batch, output: torch.ones(2), "frozen", needs_batch=False)
    with pytest.raises(ValueError, match=r"target 'frozen' of constraint .* has no gradient path to any parameter"):
        _solver(frozen)
    detached = ceq.Target(lambda model, batch, output: output.mean(0).detach(), "detached", needs_batch=True)
    with pytest.raises(ValueError, match="target 'detached'.*no gradient path"):
        _solver(detached)


def test_a_target_that_parameters_move_is_accepted():
    mean = ceq.Target(lambda model, batch, output: output.mean(0), "mean_output", needs_batch=True)
    solver = _solver(mean)
    record = solver.step(torch.randn(4, 3))
    assert record.multipliers  # the constraint took part in the step


def test_a_float64_target_in_a_float32_model_is_refused():
    wide = ceq.Target(lambda model, batch, output: output.mean(0).double(), "wide", needs_batch=True)
    with pytest.raises(ValueError, match=r"target 'wide' .* dtype torch\.float32 like the model's parameters "
                                         r"\(got torch\.float64\)"):
        _solver(wide)


def test_a_target_whose_length_follows_the_batch_is_named_at_the_step():
    per_sample = ceq.Target(lambda model, batch, output: output[:, 0], "per_sample", needs_batch=True)
    solver = _solver(per_sample)  # L = 4 on the example batch
    with pytest.raises(ValueError, match=r"target 'per_sample' .* returned shape \(7,\) on this batch but \(4,\)"):
        solver.step(torch.randn(7, 3))


def test_an_objective_returning_a_vector_is_refused():
    mean = ceq.Target(lambda model, batch, output: output.mean(0), "mean_output", needs_batch=True)
    with pytest.raises(ValueError, match=r"expected the objective to return a scalar .*got shape \(4,\)"):
        _solver(mean, loss=lambda output, batch: output.pow(2).mean(1))
