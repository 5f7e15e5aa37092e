"""Reading one batch of a loader without disturbing it (for sizing constraints before training)."""

from __future__ import annotations

from typing import Any

import torch

__all__ = ["first_batch", "is_loader"]


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
