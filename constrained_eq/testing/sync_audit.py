"""An audit that a block of code reads nothing back from the device: ``forbid_host_reads``.

A GPU step that calls ``.item()``, ``bool(tensor)``, ``int(tensor)``, ``.tolist()``, ``.cpu()`` … waits for
the device to finish (a host synchronisation). On CUDA ``torch.cuda.set_sync_debug_mode("error")`` catches
those; this audit catches the same *host reads* on any device, CPU included, so a test on a machine
without a GPU can still prove a step sync-free::

    with forbid_host_reads():
        solver.step(batch)          # raises HostReadError at the first host read
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator

import torch

__all__ = ["HostReadError", "forbid_host_reads", "HOST_READS"]

HOST_READS = ("item", "cpu", "tolist", "numpy", "__bool__", "__float__", "__int__", "__index__", "__len__")


class HostReadError(AssertionError):
    """A tensor was read back to the host inside the audited region."""


@contextlib.contextmanager
def forbid_host_reads(allowed: Iterable[torch.Tensor] = ()) -> Iterator[None]:
    """Make every host-reading tensor method raise :class:`HostReadError` inside the block.

    Args:
        allowed: Tensors that may be read (PyTorch optimizers keep their step counter ``state["step"]``
            as a CPU scalar even on GPU and read it with ``.item()``; that is not a device sync).
    """
    saved = {name: getattr(torch.Tensor, name) for name in HOST_READS}
    allowed_ids = {id(t) for t in allowed}

    def refuse(name):
        original = saved[name]

        def method(self, *args, **kwargs):
            if id(self) in allowed_ids:
                return original(self, *args, **kwargs)
            raise HostReadError(f"Tensor.{name} was called inside forbid_host_reads (a read back from the device)")
        return method

    try:
        for name in HOST_READS:
            setattr(torch.Tensor, name, refuse(name))
        yield
    finally:
        for name, method in saved.items():
            setattr(torch.Tensor, name, method)
