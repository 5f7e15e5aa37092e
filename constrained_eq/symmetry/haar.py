"""The one Haar sampler of SO(3): e3nn's ``o3.rand_matrix``, with the project's generator convention."""

from __future__ import annotations

import torch

__all__ = ["random_rotation"]


def random_rotation(
    generator: torch.Generator | None = None,
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
    *,
    batch: int | None = None,
) -> torch.Tensor:
    r"""Haar-random rotation matrices: e3nn's :func:`o3.rand_matrix`, drawn from ``generator``'s stream.

    ``o3.rand_matrix`` draws Euler angles :math:`\alpha, \gamma \sim U[0, 2\pi)` and
    :math:`\cos\beta \sim U[-1, 1]` from torch's global RNG. With a ``generator`` the very same draws
    are taken from ``generator`` instead (on its device, CPU or CUDA), and ``generator`` advances as if
    it had been used; the global RNGs are left untouched. So
    ``random_rotation(torch.Generator().manual_seed(s), batch=n)`` equals ``o3.rand_matrix(n)`` after
    ``torch.manual_seed(s)``.

    Args:
        generator: Optional CPU or CUDA ``torch.Generator`` (default: torch's global RNG, on ``device``).
        dtype: Floating dtype (default: the default dtype).
        device: Device of the result.
        batch: If given, return ``(batch, 3, 3)``; otherwise ``(3, 3)``.

    Returns:
        Rotation matrices with ``Rᵀ R = I`` and ``det R = +1``.

    Examples:
        >>> random_rotation(torch.Generator().manual_seed(0), torch.float64, batch=2).shape
        torch.Size([2, 3, 3])
    """
    from e3nn import o3  # imported on first use: e3nn pulls in torch._dynamo (~1 s)

    shape = () if batch is None else (batch,)
    if generator is None:
        return o3.rand_matrix(*shape, dtype=dtype, device=device)
    where = generator.device
    if where.type == "cpu":
        default, forked = torch.default_generator, []
    elif where.type == "cuda":
        index = torch.cuda.current_device() if where.index is None else where.index
        default, forked = torch.cuda.default_generators[index], [index]
    else:
        raise ValueError(f"Expected 'generator' to be a CPU or CUDA torch.Generator (got one on {where})")
    with torch.random.fork_rng(devices=forked, device_type="cuda"):  # restores the global RNGs on exit
        default.set_state(generator.get_state())
        rotation = o3.rand_matrix(*shape, dtype=dtype, device=where)
        generator.set_state(default.get_state())
    return rotation.to(device=device)
