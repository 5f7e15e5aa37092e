"""Two CPU processes (gloo) with a DDP-wrapped model take the same steps as one process on the whole batch.

Each rank trains on its half of a fixed batch. After a few steps:

(a) λ, u and γ are bitwise identical on both ranks (gathered with ``all_gather``);
(b) they equal (float64, allclose) a single-process run on the concatenated batch.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F
from _toy import RelaxedMLP as Relaxed
from torch import nn

import constrained_eq as ceq
from constrained_eq._utils.distributed import destroy

WORLD_SIZE = 2
STEPS = 5
FORMULATIONS = {"lagrangian": {}, "resilient": {"rho": 0.5}}

pytestmark = pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(),
                                reason="torch.distributed with gloo is not available")




def _data(n: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(3)
    return (torch.randn(n, 4, generator=generator, dtype=torch.float64),
            torch.randn(n, 2, generator=generator, dtype=torch.float64))


def _train(model: nn.Module, batch, formulation: str) -> dict[str, torch.Tensor]:
    """Train ``STEPS`` steps and return the flattened λ, u and γ."""
    problem = ceq.ConstrainedProblem(lambda out, b: F.mse_loss(out, b[1]), [ceq.Equality(ceq.gammas)])
    solver = ceq.Solver(problem, model, formulation, torch.optim.Adam(model.parameters(), lr=1e-2),
                        dual_lr=5e-2, variable_lr=5e-2, **FORMULATIONS[formulation])
    for _ in range(STEPS):
        solver.step(batch)
    record = solver.step(batch)

    def flat(d):
        return torch.cat([v.reshape(-1) for v in d.values()]) if d else torch.zeros(0, dtype=torch.float64)

    return {"lambda": flat(record.multipliers), "u": flat(record.slacks),
            "gamma": ceq.gammas(model).detach().clone(),
            "theta": torch.cat([p.detach().reshape(-1) for p in model.parameters()])}


def _worker(rank: int, world_size: int, store_path: str, formulation: str, out_dir: str) -> None:
    torch.set_num_threads(1)
    os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")  # loopback: works offline and in sandboxes
    store = dist.FileStore(store_path, world_size)
    dist.init_process_group("gloo", store=store, rank=rank, world_size=world_size)
    ddp = None
    try:
        torch.manual_seed(0)
        model = Relaxed().double()
        ddp = nn.parallel.DistributedDataParallel(model)
        x, y = _data()
        shard = len(x) // world_size
        batch = (x[rank * shard:(rank + 1) * shard], y[rank * shard:(rank + 1) * shard])
        result = _train(ddp, batch, formulation)
        gathered = {}
        for key, value in result.items():
            parts = [torch.empty_like(value) for _ in range(world_size)]
            dist.all_gather(parts, value)
            gathered[key] = parts
        torch.save(gathered, Path(out_dir) / f"rank{rank}.pt")
        dist.barrier()  # no rank tears gloo down while the other still talks to it
    finally:
        del ddp  # DDP's reducer holds the process group: free it before the group is torn down
        destroy()  # frees Solver/DDP reference cycles while the group lives


@pytest.mark.parametrize("formulation", list(FORMULATIONS))
def test_ddp_ranks_agree_and_match_one_process(tmp_path, formulation):
    mp.spawn(_worker, args=(WORLD_SIZE, str(tmp_path / "store"), formulation, str(tmp_path)),
             nprocs=WORLD_SIZE, join=True)
    gathered = torch.load(tmp_path / "rank0.pt")

    # (a) bitwise identical across ranks
    for key, parts in gathered.items():
        for rank, part in enumerate(parts[1:], start=1):
            assert torch.equal(parts[0], part), f"{key} differs between rank 0 and rank {rank}"

    # (b) equal to one process on the concatenated batch
    torch.manual_seed(0)
    single = _train(Relaxed().double(), _data(), formulation)
    for key, value in single.items():
        torch.testing.assert_close(gathered[key][0], value, rtol=1e-9, atol=1e-11, msg=lambda m, key=key: f"{key}: {m}")
    if formulation == "resilient":
        assert gathered["u"][0].numel() == 3 and gathered["lambda"][0].numel() == 3  # one slack and one λ per γ
    assert not torch.equal(single["gamma"], torch.ones(3, dtype=torch.float64))  # γ actually moved
