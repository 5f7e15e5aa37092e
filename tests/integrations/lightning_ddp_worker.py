"""One rank of the Lightning DDP check (run by test_lightning_ddp.py under torchrun): ``worker.py OUT_DIR``.

The rank trains the toy problem twice from the same seed: first as docs/distributed.md's torchrun script
does (the model wrapped in DDP after the Solver, a ``DistributedSampler`` with seed 0), then as a
``SolverModule`` under ``Trainer(strategy="ddp")``, whose own ``DistributedSampler`` also has seed 0.
It writes ``rank<r>.pt``: both runs' θ, γ, λ, u as gathered from every rank, Lightning's last validation
columns and the plain ``measure`` of the whole validation split on the final model.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import integration_toy as toy
import lightning.pytorch as pl
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler

import constrained_eq as ceq
from constrained_eq._utils.distributed import destroy
from constrained_eq.core.solver.split_feasibility import measure
from constrained_eq.integrations.lightning import SolverModule

EPOCHS, BATCH = 2, 8  # per-rank batch


def gathered(state: dict[str, torch.Tensor]) -> dict[str, list[torch.Tensor]]:
    out = {}
    for key, value in state.items():
        parts = [torch.empty_like(value) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, value)
        out[key] = parts
    return out


def plain(rank: int) -> dict[str, list[torch.Tensor]]:
    model = toy.model()
    solver = ceq.Solver(toy.problem(), model, "resilient", toy.adam, example_batch=toy.example_batch(),
                        **toy.SOLVER, **toy.FORMULATIONS["resilient"])
    solver.model = DistributedDataParallel(model, static_graph=True)
    data = toy.dataset()
    sampler = DistributedSampler(data, num_replicas=dist.get_world_size(), rank=rank, shuffle=True, seed=0)
    for epoch in range(EPOCHS):
        solver.set_epoch(epoch)
        sampler.set_epoch(epoch)
        for batch in DataLoader(data, batch_size=BATCH, sampler=sampler):
            solver.step(batch)
    result = gathered(toy.state(model, solver))
    solver.model = None  # DDP's reducer holds the process group
    return result


def lightning() -> tuple[dict[str, list[torch.Tensor]], dict[str, float], dict]:
    lit = SolverModule(toy.model(), toy.problem(), "resilient", toy.adam, example_batch=toy.example_batch(),
                       **toy.SOLVER, **toy.FORMULATIONS["resilient"])
    trainer = pl.Trainer(accelerator="cpu", devices=dist.get_world_size(), strategy="ddp", max_epochs=EPOCHS,
                         logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False)
    validation = DataLoader(toy.dataset(24), batch_size=6)  # 12 samples a rank: no padding
    trainer.fit(lit, DataLoader(toy.dataset(), batch_size=BATCH, shuffle=True), validation)
    logged = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val")}
    measured = measure(lit.solver, lit.model, DataLoader(toy.dataset(24), batch_size=6))
    return gathered(toy.state(lit.model, lit.solver)), logged, measured.columns("val")


def main(out_dir: Path) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo")  # env:// from torchrun; Lightning joins this group
    rank = dist.get_rank()
    reference = plain(rank)
    states, logged, measured = lightning()
    torch.save({"plain": reference, "lightning": states, "logged": logged, "measured": measured,
                "world_size": dist.get_world_size()}, out_dir / f"rank{rank}.pt")
    dist.barrier()  # no rank tears gloo down while the other still talks to it
    destroy()  # frees Solver/DDP reference cycles while the group lives


if __name__ == "__main__":
    os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
    main(Path(sys.argv[1]))
