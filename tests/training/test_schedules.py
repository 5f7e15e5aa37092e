"""Training options of problem files: LR schedules (θ and γ/u), gradient clipping, bf16 autocast."""

from __future__ import annotations

import csv
import json
import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from constrained_eq.run.build import build
from constrained_eq.run.problem_file import load_problem_file
from constrained_eq.run.problem_yaml import ProblemFileError
from constrained_eq.run.runner import run_problem
from constrained_eq.training.clipping import GradClipper
from constrained_eq.training.precision import autocast_forward
from constrained_eq.training.schedules import LRSchedule, LRScheduler, resolve_schedule

TOY = """task:
  name: toy_rotation
  options: {n_train: 64, n_val: 16, n_test: 16, breaking: 0.2}
model:
  name: vector_net
  options: {hidden: 4, n_layers: 2}
strategy: ace_resilient
optimizer: {lr: 1e-2}
variable_lr: 4e-2
training:
  epochs: 4
  batch_size: 16
  scheduler: {name: step, options: {step_size: 2, gamma: 0.5}}
  variable_scheduler: cosine
  clip_grad_norm: 0.25
evaluation: {equivariance_error: false}
"""


def _spec(tmp_path, text=TOY, overrides=None):
    path = tmp_path / "toy.yaml"
    path.write_text(text)
    return load_problem_file(path, overrides)


@given(st.integers(1, 50), st.floats(0.0, 0.9))
def test_cosine_runs_from_one_to_min_factor(epochs, min_factor):
    factor = resolve_schedule("cosine", {"min_factor": min_factor}, epochs)
    values = [factor(e) for e in range(epochs + 1)]
    assert values[0] == 1.0 and math.isclose(values[-1], min_factor, abs_tol=1e-12)
    assert all(a >= b - 1e-15 for a, b in zip(values, values[1:], strict=False))  # non-increasing
    if epochs % 2 == 0:
        assert math.isclose(values[epochs // 2], (1 + min_factor) / 2)  # half way: the mean of the ends


@given(st.integers(0, 40), st.integers(1, 10), st.floats(0.01, 1.0))
def test_step_multistep_exponential_closed_forms(epoch, step_size, gamma):
    assert resolve_schedule("step", {"step_size": step_size, "gamma": gamma}, 41)(epoch) == gamma ** (epoch // step_size)
    milestones = [step_size, 2 * step_size]
    expected = gamma ** ((epoch >= step_size) + (epoch >= 2 * step_size))
    assert resolve_schedule("multistep", {"milestones": milestones, "gamma": gamma}, 41)(epoch) == expected
    assert resolve_schedule("exponential", {"gamma": gamma}, 41)(epoch) == gamma**epoch


def test_lr_schedule_scales_every_group_from_its_base():
    params = [torch.nn.Parameter(torch.zeros(1)), torch.nn.Parameter(torch.zeros(1))]
    optimizer = torch.optim.SGD([{"params": params[:1], "lr": 0.1}, {"params": params[1:], "lr": 0.3}])
    schedule = LRSchedule(optimizer, resolve_schedule("exponential", {"gamma": 0.5}, 10))
    schedule.set_epoch(3)
    assert [g["lr"] for g in optimizer.param_groups] == [0.1 / 8, 0.3 / 8]
    schedule.set_epoch(0)
    assert [g["lr"] for g in optimizer.param_groups] == [0.1, 0.3]


def test_lr_schedule_writes_a_tensor_rate_in_place():
    """A compiled step holds its rate in a 0-d tensor: the schedule writes η_0 f(e) into that very tensor."""
    rate = torch.tensor(0.1)
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=rate)
    schedule = LRSchedule(optimizer, resolve_schedule("exponential", {"gamma": 0.5}, 10))
    schedule.set_epoch(2)
    assert optimizer.param_groups[0]["lr"] is rate and float(rate) == pytest.approx(0.1 * 0.5**2, rel=1e-6)
    schedule.set_epoch(0)
    assert float(rate) == pytest.approx(0.1, rel=1e-6)


def test_a_schedule_with_a_negative_factor_is_refused_at_that_epoch():
    # exponential with γ = −0.5: f(0) = 1, f(1) = −0.5 < 0, a negative learning rate
    with pytest.raises(ValueError, match=r"Expected schedule 'exponential' to give a finite factor ≥ 0 at every epoch "
                                         r"\(got -0\.5 at epoch 1\)"):
        resolve_schedule("exponential", {"gamma": -0.5}, 3)


@given(st.lists(st.floats(-3, 3), min_size=3, max_size=3), st.floats(0.05, 2.0))
def test_clipping_rescales_the_gradient_to_at_most_c(grad, c):
    p = torch.nn.Parameter(torch.zeros(3, dtype=torch.float64))
    optimizer = torch.optim.SGD([p], lr=1.0)
    clipper = GradClipper(optimizer, c)
    g = torch.tensor(grad, dtype=torch.float64)
    p.grad = g.clone()
    optimizer.step()  # p = 0 − 1 · g · min(1, c/‖g‖)
    norm = g.norm()
    expected = -g * min(1.0, c / (float(norm) + 1e-6))  # torch adds 1e-6 to the norm
    assert torch.allclose(p.detach(), expected, rtol=1e-12, atol=1e-15)
    assert float(clipper.last_norm) == pytest.approx(float(norm), rel=1e-12)


def test_bf16_forward_is_the_bfloat16_matmul_cast_back():
    layer = torch.nn.Linear(8, 4, bias=False)
    x = torch.randn(5, 8)
    out = autocast_forward(lambda m, b: m(b[0]), "cpu")(layer, (x,))
    assert out.dtype == torch.float32
    assert torch.equal(out, (x.bfloat16() @ layer.weight.bfloat16().T).float())
    assert not torch.equal(out, layer(x))  # it is not the float32 product


def test_run_records_the_scheduled_rates_and_the_clipped_norm(tmp_path):
    spec = _spec(tmp_path)
    assert spec["training"]["variable_scheduler"] == {"name": "cosine", "options": {}}
    run_problem(spec, tmp_path / "run", progress=False)
    rows = list(csv.DictReader(open(tmp_path / "run" / "history.csv")))
    assert [float(r["lr.primal"]) for r in rows] == [1e-2, 1e-2, 5e-3, 5e-3]  # step: ×0.5 every 2 epochs
    cosine = [4e-2 * 0.5 * (1 + math.cos(math.pi * e / 4)) for e in range(4)]
    assert [float(r["lr.variables"]) for r in rows] == pytest.approx(cosine, rel=1e-12)
    assert all(float(r["grad_norm.primal"]) > 0 for r in rows)
    problem = json.loads((tmp_path / "run" / "problem.json").read_text())["problem"]["training"]
    assert problem["clip_grad_norm"] == 0.25 and problem["precision"] == "fp32"
    assert problem["scheduler"] == {"name": "step", "options": {"step_size": 2, "gamma": 0.5}}


def test_resume_continues_the_schedule_exactly(tmp_path, monkeypatch):
    spec = _spec(tmp_path)
    run_problem(spec, tmp_path / "whole", progress=False)
    original = LRScheduler.on_epoch_end

    def interrupt_at_epoch_2(self, epoch, row):
        if epoch == 2:
            raise KeyboardInterrupt
        original(self, epoch, row)

    monkeypatch.setattr(LRScheduler, "on_epoch_end", interrupt_at_epoch_2)
    with pytest.raises(KeyboardInterrupt):
        run_problem(spec, tmp_path / "split", progress=False)
    monkeypatch.setattr(LRScheduler, "on_epoch_end", original)
    run_problem(spec, tmp_path / "split", progress=False, resume=True)
    whole = list(csv.DictReader(open(tmp_path / "whole" / "history.csv")))
    split = list(csv.DictReader(open(tmp_path / "split" / "history.csv")))
    assert split == whole  # rates, losses, γ, λ, u: the same digits


def test_bf16_problem_builds_an_autocast_objective(tmp_path):
    spec = _spec(tmp_path, overrides={"training.precision": "bf16"})
    built = build(spec)
    batch = next(iter(built.train_loader))
    out = built.solver.problem.objective.forward(built.model, batch)
    assert out.dtype == torch.float32
    with torch.autocast("cpu", dtype=torch.bfloat16):
        expected = built.model(batch[0]).float()
    assert torch.equal(out, expected)


@pytest.mark.parametrize(("text", "replacement", "line", "message"), [
    ("variable_scheduler: cosine", "variable_scheduler: linear", 14,
     "'training.variable_scheduler': Expected a schedule among 'cosine', 'step', 'multistep', 'exponential'"),
    ("options: {step_size: 2, gamma: 0.5}", "options: {size: 2}", 13,
     "'training.scheduler': schedule 'step' takes options ['step_size', 'gamma']"),
    ("{name: step, options: {step_size: 2, gamma: 0.5}}", "{name: exponential, options: {gamma: x}}", 13,
     "'training.scheduler': schedule 'exponential' failed at epoch 0: TypeError"),
    ("clip_grad_norm: 0.25", "clip_grad_norm: -1", 15,
     "Expected 'training.clip_grad_norm' to be null or a number > 0 (got -1)"),
    ("variable_lr: 4e-2", "variable_optimizer: primal", 14,
     "Expected no 'training.variable_scheduler' with variable_optimizer 'primal'"),
])
def test_bad_training_options_name_the_line(tmp_path, text, replacement, line, message):
    with pytest.raises(ProblemFileError) as err:
        _spec(tmp_path, TOY.replace(text, replacement))
    assert str(err.value).startswith(f"{tmp_path / 'toy.yaml'}:{line}: {message}"), str(err.value)


def test_clipping_and_schedules_span_every_optimizer_of_theta():
    """With optimizer.groups θ has several optimizers: one joint norm, every optimizer on the schedule."""
    a, b = torch.nn.Parameter(torch.zeros(2, dtype=torch.float64)), torch.nn.Parameter(torch.zeros(1, dtype=torch.float64))
    first, second = torch.optim.SGD([a], lr=1.0), torch.optim.SGD([b], lr=2.0)
    factor = resolve_schedule("exponential", {"gamma": 0.5}, 4)
    callbacks = [LRScheduler([first, second], factor, "primal"), GradClipper([first, second], 1.0)]
    a.grad, b.grad = torch.tensor([3.0, 0.0], dtype=torch.float64), torch.tensor([4.0], dtype=torch.float64)
    first.step()  # the joint norm is 5: both gradients are scaled by 1/5 (+1e-6), before either step
    second.step()
    scale = 1.0 / (5.0 + 1e-6)
    assert torch.allclose(a.detach(), torch.tensor([-3.0 * scale, 0.0], dtype=torch.float64), rtol=1e-12)
    assert torch.allclose(b.detach(), torch.tensor([-2.0 * 4.0 * scale], dtype=torch.float64), rtol=1e-12)
    row: dict = {}
    for callback in callbacks:  # as fit calls them at the end of epoch 0
        callback.on_epoch_end(0, row)
    assert row == {"lr.primal": 1.0, "grad_norm.primal": 5.0}
    assert (first.param_groups[0]["lr"], second.param_groups[0]["lr"]) == (0.5, 1.0)
