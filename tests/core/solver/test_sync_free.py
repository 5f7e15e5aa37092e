"""The hot step reads nothing back to the host when ``check_finite=False``; compiled models step.

* On CUDA: ``torch.cuda.set_sync_debug_mode("error")`` turns any device→host sync into an error.
* Everywhere (CPU included): a host-read audit patches the tensor methods that read device values
  on the host (``item``, ``cpu``, ``tolist``, ``numpy``, ``__bool__``, ``__float__``, ``__int__``, …)
  to raise while ``Solver.step`` runs.
"""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from _toy import RelaxedMLP as Relaxed

import constrained_eq as ceq
from constrained_eq.testing.sync_audit import HostReadError, forbid_host_reads


def _optimizer_step_counters(solver: ceq.Solver) -> list[torch.Tensor]:
    """The CPU step counters of every optimizer the solver drives (created by the first step)."""
    optimizers = [*solver.optimizer.primal_optimizers, *(solver.optimizer.dual_optimizers or [])]
    return [state["step"] for opt in optimizers for state in opt.state.values()
            if isinstance(state.get("step"), torch.Tensor) and state["step"].device.type == "cpu"]


def _batch(device, n=16):
    generator = torch.Generator().manual_seed(1)
    return torch.randn(n, 4, generator=generator).to(device), torch.randn(n, 2, generator=generator).to(device)


def _problem(formulation: str) -> ceq.ConstrainedProblem:
    constraints = [ceq.Equality(ceq.gammas)]
    if formulation == "schedule":
        constraints.append(ceq.Penalty(ceq.gammas, weight=0.01, name="gamma_penalty"))
    return ceq.ConstrainedProblem(lambda out, batch: F.mse_loss(out, batch[1]), constraints)


FORMULATIONS = [("lagrangian", {}), ("resilient", {"rho": 1.0}), ("augmented_lagrangian", {}),
                ("penalty", {}), ("schedule", {"epochs": 4}), ("none", {})]


def _solver(model, formulation, options, **kwargs):
    return ceq.Solver(_problem(formulation), model, formulation, torch.optim.Adam(model.parameters(), lr=1e-2),
                      dual_lr=1e-2, check_finite=False, **options, **kwargs)


@pytest.mark.parametrize(("formulation", "options"), FORMULATIONS, ids=[f for f, _ in FORMULATIONS])
@pytest.mark.parametrize("scheme", ["simultaneous", "alternating_primal_dual", "alternating_dual_primal"])
def test_step_makes_no_host_read(device, formulation, options, scheme):
    model = Relaxed().to(device)
    solver = _solver(model, formulation, options, constrained_optimizer=scheme)
    batch = _batch(device)
    solver.step(batch)  # first step: optimizer state is created (allowed to be slow, not to sync)
    with forbid_host_reads(allowed=_optimizer_step_counters(solver)):
        for _ in range(3):
            record = solver.step(batch)
    assert isinstance(record.loss, torch.Tensor)


def test_audit_catches_a_host_read():
    with forbid_host_reads(), pytest.raises(HostReadError):
        torch.ones(()).item()
    assert torch.ones(()).item() == 1.0  # restored


def test_check_finite_step_does_read_the_host():
    """The audit is meaningful: the default finiteness check does read one flag back."""
    model = Relaxed()
    solver = ceq.Solver(_problem("lagrangian"), model, "lagrangian", torch.optim.Adam(model.parameters(), lr=1e-2))
    with forbid_host_reads(), pytest.raises(HostReadError):
        solver.step(_batch("cpu"))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA is not available")
@pytest.mark.parametrize(("formulation", "options"), FORMULATIONS, ids=[f for f, _ in FORMULATIONS])
def test_cuda_step_has_no_sync(formulation, options):
    device = torch.device("cuda")
    model = Relaxed().to(device)
    solver = _solver(model, formulation, options)
    batch = _batch(device)
    solver.step(batch)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for _ in range(3):
            solver.step(batch)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    torch.cuda.synchronize()


@pytest.mark.parametrize("backend", ["eager", "aot_eager"])
def test_compiled_model_steps_like_eager(backend):
    torch.manual_seed(0)
    eager_model = Relaxed().double()
    compiled_base = copy.deepcopy(eager_model)
    batch = tuple(t.double() for t in _batch("cpu"))
    eager = _solver(eager_model, "lagrangian", {})
    compiled = ceq.Solver(_problem("lagrangian"), compiled_base, "lagrangian",
                          torch.optim.Adam(compiled_base.parameters(), lr=1e-2), dual_lr=1e-2, check_finite=False)
    compiled.model = torch.compile(compiled_base, backend=backend)
    for _ in range(5):
        a, b = eager.step(batch), compiled.step(batch)
        torch.testing.assert_close(a.loss, b.loss, rtol=1e-10, atol=1e-12)
    for p, q in zip(eager_model.parameters(), compiled_base.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(eager.multipliers(), compiled.multipliers(), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize(("model_name", "strategy"), [("egnn", "ace"), ("egnn", "cr"), ("segnn", "ace")])
def test_nbody_model_steps_without_host_reads(device, tmp_path, model_name, strategy):
    """The N-body models (graph means included) and CR's Lie penalty step without reading the device."""
    from constrained_eq._utils.loaders import to_device
    from constrained_eq.symmetry import LieDerivative
    from constrained_eq.tasks.nbody import NBody

    task = NBody(n_train=8, n_val=2, n_test=2, root=str(tmp_path))
    small = {"hidden_nf": 8, "n_layers": 2} if model_name == "egnn" else {"hidden_nf": 8, "n_layers": 1}
    model = task.model(model_name, **small).to(device)
    batch = to_device(next(iter(task.loaders(0, 4).train)), device)
    constraints = [ceq.Equality(ceq.gammas)] + ([LieDerivative(weight=0.01)] if strategy == "cr" else [])
    formulation, options = ("schedule", {"epochs": 4}) if strategy == "cr" else ("lagrangian", {})
    problem = ceq.ConstrainedProblem(ceq.Objective(task.loss, task.forward), constraints)
    solver = ceq.Solver(problem, model, formulation, torch.optim.Adam(model.parameters(), lr=1e-3), dual_lr=1e-2,
                        check_finite=False, example_batch=batch, **options)
    solver.step(batch)
    cuda = device.type == "cuda"
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.set_sync_debug_mode("error")
    try:
        with forbid_host_reads(allowed=_optimizer_step_counters(solver)):
            for _ in range(2):
                solver.step(batch)
    finally:
        if cuda:
            torch.cuda.set_sync_debug_mode("default")
