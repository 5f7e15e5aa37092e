"""One rank of the Accelerate check (run by test_accelerate_ddp.py under torchrun): ``worker.py OUT_DIR``.

The rank trains the toy problem three times from the same seed, on a 64-sample set in global batches of 16:

* ``torchrun``: docs/distributed.md's loop (DDP after the Solver, a ``DistributedSampler`` with seed 0);
* ``accelerate``: the Solver on a model, optimizer and loader prepared by an ``Accelerator`` whose seedable
  sampler has seed 0 (the same permutation, so the same global batches, split across ranks otherwise),
  saving ``accelerator.save_state`` after epoch ``SAVE_AFTER``;
* ``resumed``: fresh objects that ``load_state`` that folder and train the remaining epochs.

It writes ``rank<r>.pt``: per run, every step's global batch (sample indices, gathered from both ranks),
loss and λ, and the final θ, γ, λ, u gathered from every rank.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import integration_toy as toy
import torch
import torch.distributed as dist
from accelerate import Accelerator, DataLoaderConfiguration
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler

import constrained_eq as ceq
from constrained_eq._utils.distributed import destroy
from constrained_eq.integrations.accelerate import SolverCheckpoint, prepare

EPOCHS, SAVE_AFTER, BATCH = 4, 2, 8  # per-rank batch


def gather(value: torch.Tensor) -> list[torch.Tensor]:
    parts = [torch.empty_like(value) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, value)
    return parts


def solver_for(model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> ceq.Solver:
    return ceq.Solver(toy.problem(), model, "resilient", optimizer, example_batch=toy.example_batch(),
                      **toy.SOLVER, **toy.FORMULATIONS["resilient"])


def train(solver: ceq.Solver, loader: DataLoader, epochs: range, set_epoch, log: dict) -> None:
    for epoch in epochs:
        solver.set_epoch(epoch)
        set_epoch(epoch)
        for batch in loader:
            record = solver.step(batch)
            log["batches"].append(sorted(torch.cat(gather(batch[2])).tolist()))
            log["records"].append((record.loss.detach().clone(), solver.multipliers()))


def final(model: torch.nn.Module, solver: ceq.Solver) -> dict[str, list[torch.Tensor]]:
    return {key: gather(value) for key, value in toy.state(model, solver).items()}


def torchrun_run(rank: int) -> dict:
    model = toy.model()
    solver = solver_for(model, toy.adam(model.parameters()))
    solver.model = DistributedDataParallel(model)
    data, log = toy.dataset(), {"batches": [], "records": []}
    sampler = DistributedSampler(data, num_replicas=dist.get_world_size(), rank=rank, shuffle=True, seed=0)
    train(solver, DataLoader(data, batch_size=BATCH, sampler=sampler), range(EPOCHS), sampler.set_epoch, log)
    log["final"] = final(model, solver)
    solver.model = None
    return log


def accelerated() -> tuple[Accelerator, torch.nn.Module, ceq.Solver, DataLoader]:
    accelerator = Accelerator(cpu=True, dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True,
                                                                                  data_seed=0))
    model = toy.model().to(accelerator.device)
    optimizer = toy.adam(model.parameters())
    solver = solver_for(model, optimizer)
    _, optimizer, loader = prepare(accelerator, solver, optimizer, DataLoader(toy.dataset(), batch_size=BATCH,
                                                                              shuffle=True))
    accelerator.register_for_checkpointing(SolverCheckpoint(solver))
    return accelerator, model, solver, loader


def accelerate_run(folder: Path) -> dict:
    accelerator, model, solver, loader = accelerated()
    log = {"batches": [], "records": []}
    train(solver, loader, range(SAVE_AFTER), loader.set_epoch, log)
    accelerator.save_state(folder)
    train(solver, loader, range(SAVE_AFTER, EPOCHS), loader.set_epoch, log)
    log["final"] = final(model, solver)
    log["wrapped"] = type(solver.model).__name__
    solver.model = None
    accelerator.free_memory()  # DDP wrappers hold the process group
    return log


def resumed_run(folder: Path) -> dict:
    accelerator, model, solver, loader = accelerated()
    accelerator.load_state(folder)
    log = {"batches": [], "records": [], "step_after_load": solver.step_count}
    train(solver, loader, range(SAVE_AFTER, EPOCHS), loader.set_epoch, log)
    log["final"] = final(model, solver)
    solver.model = None
    accelerator.free_memory()
    return log


def main(out_dir: Path) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo")  # env:// from torchrun; the Accelerator joins this group
    rank = dist.get_rank()
    results = {"torchrun": torchrun_run(rank)}
    results["accelerate"] = accelerate_run(out_dir / "state")
    dist.barrier()  # the state is written before any rank loads it
    results["resumed"] = resumed_run(out_dir / "state")
    results["world_size"] = dist.get_world_size()
    torch.save(results, out_dir / f"rank{rank}.pt")
    dist.barrier()  # no rank tears gloo down while the other still talks to it
    destroy()  # frees Solver/DDP reference cycles while the group lives


if __name__ == "__main__":
    os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
    main(Path(sys.argv[1]))
