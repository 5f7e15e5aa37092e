"""so(3) algebra matrices dρ(J_k) of flat feature layouts, for CR's analytic Lie derivative (CR §3).

``J_x, J_y, J_z`` are the standard basis of so(3) (SPEC §1.5); a cartesian 3-vector block carries them
unchanged, a scalar block carries zeros, and a type-``l`` e3nn irrep carries ``so3_generators(l)``
(e3nn 0.6 uses the cartesian ``(x, y, z)`` basis for ``1o``, so both conventions agree for ``l = 1``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from e3nn import o3

__all__ = ["SO3_GENERATORS", "cartesian_algebra", "irreps_algebra"]

SO3_GENERATORS = torch.tensor(
    [
        [[0.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]],
        [[0.0, 0.0, 1.0], [0.0, 0.0, 0.0], [-1.0, 0.0, 0.0]],
        [[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 0.0]],
    ],
    dtype=torch.float64,
)


def cartesian_algebra(layout: Sequence[tuple[str, int]], dtype: torch.dtype | None = None) -> torch.Tensor:
    """Block-diagonal ``(3, d, d)`` algebra matrices of a flat layout of scalars and cartesian vectors.

    Args:
        layout: Blocks in order, e.g. ``[("vector", 2), ("scalar", 64)]`` for ``[x (3), v (3), h (64)]``.
        dtype: Output dtype (default: the default dtype).

    Shapes:
        - **output:** ``(3, d, d)`` with ``d = Σ count · (3 if vector else 1)``
    """
    blocks = []
    for kind, count in layout:
        if kind == "scalar":
            blocks += [torch.zeros(3, 1, 1, dtype=torch.float64)] * count
        elif kind == "vector":
            blocks += [SO3_GENERATORS] * count
        else:
            raise ValueError(f"Expected 'layout' kinds to be 'scalar' or 'vector' (got {kind!r})")
    out = torch.stack([torch.block_diag(*(b[k] for b in blocks)) for k in range(3)])
    return out.to(dtype or torch.get_default_dtype())


def irreps_algebra(irreps: str | o3.Irreps, dtype: torch.dtype | None = None) -> torch.Tensor:
    """Block-diagonal ``(3, d, d)`` algebra matrices of e3nn ``irreps``: ``so3_generators(l)`` per copy.

    They satisfy ``Irreps.D_from_matrix(expm(t J_k)) = expm(t · out[k])``.

    Shapes:
        - **output:** ``(3, irreps.dim, irreps.dim)``
    """
    irreps = o3.Irreps(irreps)
    blocks = [o3.so3_generators(ir.l).to(torch.float64) for mul, ir in irreps for _ in range(mul)]
    out = torch.stack([torch.block_diag(*(b[k] for b in blocks)) for k in range(3)])
    return out.to(dtype or torch.get_default_dtype())
