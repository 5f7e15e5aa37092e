r"""Reading what the non-equivariant branches do: recorded inputs and per-layer contributions."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import nn

from constrained_eq.homotopy.layers import LinearBranch, homotopic_layers


def sample_norms(out: Any) -> torch.Tensor:
    """Per-sample Euclidean norms over all axes but the first; tuples are joined per sample.

    A scalar output gives its absolute value; a tuple whose tensors differ in their first axis
    (e.g. node and graph features) gives one norm over everything, shape ``(1,)``.
    """
    if isinstance(out, torch.Tensor):
        return out.abs().reshape(1) if out.dim() == 0 else out.reshape(out.shape[0], -1).norm(dim=1)
    tensors = [t for t in out] if isinstance(out, tuple | list) else None
    if not tensors or not all(isinstance(t, torch.Tensor) for t in tensors):
        raise TypeError(f"Expected a Tensor or a tuple of Tensors (got {type(out).__name__})")
    if len({t.shape[0] if t.dim() else None for t in tensors}) == 1 and tensors[0].dim() > 0:
        squares = sum(t.reshape(t.shape[0], -1).pow(2).sum(dim=1) for t in tensors)
    else:
        squares = sum(t.pow(2).sum() for t in tensors).reshape(1)
    return squares.sqrt()


def set_recording(model: nn.Module, enabled: bool = True) -> list[LinearBranch]:
    """Turn input recording of every :class:`LinearBranch` in ``model`` on or off; return the branches."""
    branches = [m for m in model.modules() if isinstance(m, LinearBranch)]
    for branch in branches:
        branch.recording = enabled
        if not enabled:
            branch.last_input = None
    return branches


@contextlib.contextmanager
def recording(model: nn.Module) -> Iterator[list[LinearBranch]]:
    """Record the (detached) input of every :class:`LinearBranch` in ``branch.last_input``.

    On exit the previous recording flags are restored; the recorded inputs are kept.

    Examples:
        >>> branch = LinearBranch(3, 2)
        >>> with recording(branch):
        ...     _ = branch(torch.ones(4, 3))
        >>> branch.last_input.shape, branch.recording
        (torch.Size([4, 3]), False)
    """
    branches = [m for m in model.modules() if isinstance(m, LinearBranch)]
    previous = [b.recording for b in branches]
    for branch in branches:
        branch.recording = True
    try:
        yield branches
    finally:
        for branch, flag in zip(branches, previous, strict=True):
            branch.recording = flag


def branch_contributions(model: nn.Module, *inputs: Any, **kwargs: Any) -> torch.Tensor:
    r"""Per-layer contribution :math:`c_i = \mathbb{E}_{batch}\,\|\gamma_i f_{neq,i}(z_{i-1})\|`.

    Runs one forward of ``model(*inputs, **kwargs)`` without gradients and reads the output of each
    layer's f_neq on the inputs it actually saw. Log it next to γ: only the product γ_i f_neq,i
    matters, so γ alone can shrink while the branch grows (SPEC §5.4).

    Returns:
        Tensor: shape ``(L,)``, in the order of :func:`homotopic_layers`.

    Examples:
        >>> from constrained_eq.homotopy import relax
        >>> net = relax(nn.Sequential(nn.Linear(3, 3)), layers=[nn.Linear], gamma_init=0.0)
        >>> branch_contributions(net, torch.ones(2, 3))
        tensor([0.])
    """
    with contribution_hooks(model) as contributions:
        with torch.no_grad():
            model(*inputs, **kwargs)
    return contributions()


@contextlib.contextmanager
def contribution_hooks(model: nn.Module) -> Iterator[Callable[[], torch.Tensor]]:
    r"""Hook every f_neq of ``model``; the yielded callable gives :math:`c_i = |\gamma_i|\,\overline{\|f_{neq,i}(z)\|}`.

    The mean runs over every sample of every forward made inside the block (a whole validation loader,
    say), so the contributions cost no forward of their own. Layers whose f_neq did not run give 0.

    Raises:
        ValueError: If the model has no :class:`HomotopicLayer`.
    """
    layers = list(homotopic_layers(model))
    if not layers:
        raise ValueError(
            f"Expected the model to contain HomotopicLayer modules (got none in {type(model).__name__}); "
            "wrap its equivariant layers with constrained_eq.relax(model) first"
        )
    sums = [None] * len(layers)
    counts = [0] * len(layers)

    def hook(i: int):
        def record(_module, _args, out):
            norms = sample_norms(out).detach()
            sums[i] = norms.sum() if sums[i] is None else sums[i] + norms.sum()
            counts[i] += norms.numel()
        return record

    def contributions() -> torch.Tensor:
        return torch.stack([layer.gamma.detach().abs().reshape(()) * (sums[i] / counts[i]) if counts[i]
                            else layer.gamma.new_zeros(()) for i, layer in enumerate(layers)])

    handles = [layer.neq.register_forward_hook(hook(i)) for i, layer in enumerate(layers)]
    try:
        yield contributions
    finally:
        for handle in handles:
            handle.remove()
