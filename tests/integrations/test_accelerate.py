"""The Accelerate helpers on one process: ``prepare`` hands the Solver the prepared model, ``SolverCheckpoint``.

Two processes are in test_accelerate_ddp.py; here: the plain loop's steps bitwise, what the checkpoint holds
and leaves to Accelerate (weights, RNG), and the refusals, each naming the way round.
"""

from __future__ import annotations

import copy

import integration_toy as toy
import pytest
import torch
from accelerate import Accelerator, DataLoaderConfiguration
from accelerate.utils import DistributedType
from torch.utils.data import DataLoader, DistributedSampler

import constrained_eq as ceq
from constrained_eq.integrations.accelerate import SolverCheckpoint, prepare

EPOCHS = 2


def accelerator(**kwargs) -> Accelerator:
    config = DataLoaderConfiguration(use_seedable_sampler=True, data_seed=0)
    return Accelerator(cpu=True, dataloader_config=config, **kwargs)


def solver_for(model: torch.nn.Module) -> ceq.Solver:
    return ceq.Solver(toy.problem(), model, "resilient", toy.adam(model.parameters()),
                      example_batch=toy.example_batch(), **toy.SOLVER, **toy.FORMULATIONS["resilient"])


def test_one_process_takes_the_plain_loops_steps_bitwise():
    model = toy.model()
    solver = solver_for(model)
    data = toy.dataset()
    sampler = DistributedSampler(data, num_replicas=1, rank=0, seed=0)  # the seedable sampler's permutation
    for epoch in range(EPOCHS):
        solver.set_epoch(epoch)
        sampler.set_epoch(epoch)
        for batch in DataLoader(data, batch_size=16, sampler=sampler):
            solver.step(batch)

    prepared_model = toy.model()
    prepared_solver = solver_for(prepared_model)
    optimizer = prepared_solver.optimizer.primal_optimizers[0]
    wrapped, _, loader = prepare(accelerator(), prepared_solver, optimizer, DataLoader(data, batch_size=16,
                                                                                      shuffle=True))
    assert wrapped is prepared_model is prepared_solver.model  # one process: no DDP wrapper
    for epoch in range(EPOCHS):
        prepared_solver.set_epoch(epoch)
        loader.set_epoch(epoch)
        for batch in loader:
            prepared_solver.step(batch)
    expected, got = toy.state(model, solver), toy.state(prepared_model, prepared_solver)
    assert all(torch.equal(expected[k], got[k]) for k in expected) and prepared_solver.step_count == 4 * EPOCHS
    assert got["lambda"].abs().sum() > 0


def test_the_checkpoint_leaves_weights_and_rng_to_accelerate_and_restores_the_rest():
    model = toy.model()
    solver = solver_for(model)
    for batch in DataLoader(toy.dataset(), batch_size=16):
        solver.step(batch)
    checkpoint = SolverCheckpoint(solver)
    state = copy.deepcopy(checkpoint.state_dict())  # as written to disk: the live tensors move on
    assert "model" not in state and "rng" not in state and state["step"] == 4
    saved = toy.state(model, solver)

    for batch in DataLoader(toy.dataset(), batch_size=16):  # λ, u and the weights move on
        solver.step(batch)
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    rng = torch.get_rng_state()
    checkpoint.load_state_dict(state)
    restored = toy.state(model, solver)
    assert torch.equal(restored["lambda"], saved["lambda"]) and torch.equal(restored["u"], saved["u"])
    assert solver.step_count == 4
    assert all(torch.equal(model.state_dict()[k], v) for k, v in weights.items())  # as Accelerate loaded them
    assert torch.equal(torch.get_rng_state(), rng)  # this process's RNG, as Accelerate restored it


def test_prepare_refuses_what_the_solver_cannot_run_under(monkeypatch):
    solver = solver_for(toy.model())
    with pytest.raises(TypeError, match="prepare: expected 'accelerator' to be an accelerate.Accelerator "
                                        "\\(got str\\)"):
        prepare("cpu", solver)
    with pytest.raises(ValueError, match="prepare: expected gradient_accumulation_steps=1 \\(got 2\\); the Solver "
                                         "takes one primal-dual step per batch, so use a larger batch instead"):
        prepare(accelerator(gradient_accumulation_steps=2), solver)
    scaled = accelerator()
    scaled.scaler = torch.amp.GradScaler("cpu")
    with pytest.raises(ValueError, match="prepare: the Solver runs its own backward, which Accelerate's fp16 "
                                         "gradient scaler does not scale; use Accelerator\\(mixed_precision='bf16'\\)"):
        prepare(scaled, solver)
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(ValueError, match="prepare: this process was launched as one of WORLD_SIZE=2, but the "
                                         "Accelerator runs alone, so every process would train by itself; on CPU "
                                         "build it with Accelerator\\(cpu=True\\)"):
        prepare(accelerator(), solver)
    monkeypatch.delenv("WORLD_SIZE")
    sharded = accelerator()
    monkeypatch.setattr(type(sharded), "distributed_type", property(lambda self: DistributedType.FSDP))
    with pytest.raises(ValueError, match="prepare: expected the Accelerator to run on one process or data-parallel "
                                         "\\(DDP\\) \\(got FSDP\\)"):
        prepare(sharded, solver)


def test_prepare_refuses_a_model_away_from_the_accelerators_device():
    solver = solver_for(toy.model())
    solver.model = toy.model().to("meta")
    with pytest.raises(ValueError, match="prepare: expected the Solver's model on accelerator.device \\(cpu\\) "
                                         "\\(got meta\\); build the Solver on model.to\\(accelerator.device\\)"):
        prepare(accelerator(), solver)


def test_the_checkpoint_takes_a_solver():
    with pytest.raises(TypeError, match="SolverCheckpoint: expected 'solver' to be a Solver \\(got Linear\\)"):
        SolverCheckpoint(torch.nn.Linear(1, 1))
