"""Batches and loaders: moving a batch to a device, its size, one batch of a loader read without disturbing it."""

from __future__ import annotations

from typing import Any

import torch

__all__ = ["first_batch", "is_loader", "to_device", "batch_size"]


def is_loader(obj: Any) -> bool:
    """Whether ``obj`` is a ``torch.utils.data.DataLoader`` (a source of batches, not a batch)."""
    return isinstance(obj, torch.utils.data.DataLoader)


def first_batch(loader: Any) -> Any:
    """The first batch of ``loader``, leaving its shuffle order and torch's global RNG as they were.

    Starting an iterator draws from the loader's ``generator`` (or, without one, from torch's global
    generator: the sampler's seed and the workers' base seed), so ``next(iter(loader))`` would shift
    every later epoch's shuffle. Both states are saved and restored around the draw.
    """
    generator = getattr(loader, "generator", None)
    saved = generator.get_state() if isinstance(generator, torch.Generator) else None
    global_state = torch.get_rng_state()
    try:
        return next(iter(loader))
    finally:
        torch.set_rng_state(global_state)
        if saved is not None:
            generator.set_state(saved)


def to_device(batch: Any, device: torch.device) -> Any:
    """Move every tensor of a (nested) batch to ``device``; named tuples keep their type."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, tuple) and hasattr(batch, "_fields"):
        return type(batch)(*(to_device(b, device) for b in batch))
    if isinstance(batch, tuple | list):
        return type(batch)(to_device(b, device) for b in batch)
    if isinstance(batch, dict):
        return {k: to_device(v, device) for k, v in batch.items()}
    if callable(getattr(batch, "to", None)):  # PyG Data/Batch and other objects that move themselves
        return batch.to(device)
    return batch


def batch_size(batch: Any) -> int:
    """Number of samples of a batch: the first axis of its first tensor, or ``num_graphs`` of a PyG batch."""
    if isinstance(batch, torch.Tensor):
        return batch.shape[0] if batch.dim() else 1
    if hasattr(batch, "num_graphs"):
        return int(batch.num_graphs)
    if isinstance(batch, tuple | list) and batch:
        return batch_size(batch[0])
    return 1
