"""Running a problem on several processes: ``torchrun --nproc_per_node=N -m constrained_eq.run.cli run …``.

What changes under ``torchrun`` (which sets ``RANK``, ``LOCAL_RANK``, ``WORLD_SIZE`` and the rendezvous):

* :func:`init_from_env` joins the process group (NCCL on CUDA, gloo on CPU) and picks the device
  ``cuda:LOCAL_RANK``;
* :func:`shard_loader` gives each rank a disjoint, equal share of every global batch through a
  :class:`~torch.utils.data.DistributedSampler`: the problem's ``batch_size`` stays the *global*
  batch, each rank loads ``batch_size / world_size`` of it;
* :func:`wrap_model` wraps the model in :class:`~torch.nn.parallel.DistributedDataParallel` after
  the :class:`~constrained_eq.Solver` is built, so gradients of θ and γ are averaged across ranks; the
  Solver averages the violations before the dual step and the slack gradients before the primal step,
  so every rank holds the same θ, γ, λ and u;
* only rank 0 writes the run folder (:func:`is_main_process`, :func:`on_main`).

One step on N ranks is then the step one process takes on the concatenated batch.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler

__all__ = ["Context", "launched", "init_from_env", "destroy", "is_main_process", "on_main", "shard_loader",
           "wrap_model", "unwrap", "fingerprint", "max_rank_difference", "is_distributed", "all_reduce_mean",
           "all_reduce_mean_"]

T = TypeVar("T")
TORCHRUN_VARIABLES = ("RANK", "LOCAL_RANK", "WORLD_SIZE")


@dataclass(frozen=True)
class Context:
    """Where this process stands in the job.

    Attributes:
        rank: Global rank (0 writes the run folder).
        local_rank: Rank on this machine (picks the GPU).
        world_size: Number of processes.
        device: ``cuda:<local_rank>`` or ``cpu``.
        backend: ``"nccl"`` or ``"gloo"``.
    """

    rank: int
    local_rank: int
    world_size: int
    device: torch.device
    backend: str

    @property
    def is_main(self) -> bool:
        """Whether this is rank 0."""
        return self.rank == 0


def launched() -> bool:
    """Whether this process was started by ``torchrun`` (its rank variables are set)."""
    return all(name in os.environ for name in TORCHRUN_VARIABLES)


def init_from_env(device: str = "cpu") -> Context | None:
    """Join the process group ``torchrun`` describes; ``None`` when not launched by ``torchrun``.

    Args:
        device: ``"cpu"`` (gloo) or ``"cuda"`` (NCCL, one GPU per process: ``cuda:LOCAL_RANK``).

    Raises:
        ValueError: If a rank variable is not an integer, or a process has no GPU of its own.
    """
    if not launched():
        return None
    try:
        rank, local_rank, world_size = (int(os.environ[name]) for name in TORCHRUN_VARIABLES)
    except ValueError:
        values = {name: os.environ[name] for name in TORCHRUN_VARIABLES}
        raise ValueError(f"Expected the torchrun variables {values} to be integers") from None
    if device == "cuda":
        if local_rank >= torch.cuda.device_count():
            raise ValueError(f"Expected one GPU per process: local rank {local_rank} but only "
                             f"{torch.cuda.device_count()} GPU(s) here; lower --nproc_per_node")
        where, backend = torch.device("cuda", local_rank), "nccl"
        torch.cuda.set_device(where)
    else:
        where, backend = torch.device("cpu"), "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend)  # env:// rendezvous from torchrun
    return Context(dist.get_rank(), local_rank, dist.get_world_size(), where, backend)


def destroy() -> None:
    """Leave the process group, freeing unreachable objects first.

    A ``Solver`` and its model refer to each other, so only the garbage collector frees them; a DDP model freed
    after its group is gone aborts the process ("terminate called without an active exception").
    """
    import gc

    gc.collect()
    dist.destroy_process_group()


def _initialized() -> bool:
    return dist.is_available() and dist.is_initialized()


def is_distributed() -> bool:
    """Whether a process group of more than one rank is running."""
    return _initialized() and dist.get_world_size() > 1


def is_main_process() -> bool:
    """``True`` on rank 0, or when no process group is running."""
    return not _initialized() or dist.get_rank() == 0


def on_main(fn: Callable[[], T]) -> T:
    """Run ``fn`` on rank 0 only and hand its result, or its exception, to every rank.

    Every rank raises the error rank 0 met (so none waits forever in a later collective) and
    returns the value rank 0 returned.
    """
    if not _initialized():
        return fn()
    outcome: list[Any] = [None]
    if dist.get_rank() == 0:
        try:
            outcome[0] = ("ok", fn())
        except Exception as err:  # handed to every rank below
            outcome[0] = ("error", err)
    dist.broadcast_object_list(outcome, src=0)
    status, value = outcome[0]
    if status == "error":
        raise value
    return value


def shard_loader(loader: DataLoader, context: Context, seed: int) -> DataLoader:
    """A loader over this rank's share of ``loader``'s dataset, each global batch split evenly.

    The shuffle is :class:`DistributedSampler`'s (seeded by ``seed``, reshuffled by ``set_epoch``, which
    :func:`~constrained_eq.training.loop.fit` calls), so a run is reproducible and resumable; the last partial
    global batch is dropped so every rank takes the same number of steps.

    Raises:
        ValueError: If the global batch size is not a multiple of the world size.
    """
    batch_size = loader.batch_size
    if batch_size is None or batch_size % context.world_size:
        raise ValueError(f"Expected 'training.batch_size' ({batch_size}) to be a multiple of the number of "
                         f"processes ({context.world_size}): it is the global batch, split evenly across ranks")
    sampler = DistributedSampler(loader.dataset, num_replicas=context.world_size, rank=context.rank, shuffle=True,
                                 seed=seed, drop_last=True)
    return DataLoader(loader.dataset, batch_size=batch_size // context.world_size, sampler=sampler,
                      collate_fn=loader.collate_fn, num_workers=loader.num_workers, pin_memory=loader.pin_memory,
                      drop_last=True)


def wrap_model(model: nn.Module, context: Context) -> nn.parallel.DistributedDataParallel:
    """Wrap ``model`` in DDP on this rank's device (call it after building the Solver).

    ``static_graph=True``: the parameters that receive gradients are the same at every step, which DDP
    then learns from the first backward. That admits parameters the loss never uses (EGNN's last node
    MLP) without ``find_unused_parameters``' graph walk at every step, and gradients that reach a
    parameter through a target run on the bare module (the Lie derivative) as well as through the
    objective.
    """
    device_ids = [context.device.index] if context.device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=device_ids, static_graph=True)


def unwrap(model: nn.Module) -> nn.Module:
    """The module inside a DDP wrapper (the model itself otherwise)."""
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def all_reduce_mean_(tensor: torch.Tensor) -> torch.Tensor:
    """Average ``tensor`` over all ranks in place (no-op on one process); returns it."""
    if is_distributed():
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        tensor.div_(dist.get_world_size())
    return tensor


def all_reduce_mean(value: torch.Tensor) -> torch.Tensor:
    """The mean of ``value`` over ranks, as a new tensor (``value`` itself on one process)."""
    return all_reduce_mean_(value.detach().clone()) if is_distributed() else value


def fingerprint(tensors: list[torch.Tensor]) -> torch.Tensor:
    r"""Per-tensor :math:`(\sum x, \sum x^2)` in float64: a short summary to compare large weights across ranks.

    Identical tensors give identical fingerprints; tensors that differ almost surely do not.
    """
    if not tensors:
        return torch.zeros(0, dtype=torch.float64)
    return torch.stack([torch.stack([t.detach().double().sum(), t.detach().double().pow(2).sum()])
                        for t in tensors]).reshape(-1)


def max_rank_difference(tensors: list[torch.Tensor]) -> float:
    r"""``max_r ‖x_r − x_0‖_∞`` over ranks of the concatenated ``tensors`` (0.0 on one process).

    Use it to check that ranks hold the same θ, γ, λ and u; it is a collective (call it on every rank).
    """
    if not is_distributed() or not tensors:
        return 0.0
    flat = torch.cat([t.detach().reshape(-1).double() for t in tensors])
    parts = [torch.empty_like(flat) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, flat)
    return max(float((part - parts[0]).abs().max()) if part.numel() else 0.0 for part in parts)
