"""Infrastructure shared by every layer, below all of them.

Atomic file writes, number checks, import paths, lazy public names, batches and loaders, the RNG
state and several processes (``torchrun``). Private to the package (nothing here is public API), and
it imports no other module of ``constrained_eq``.
"""
