"""so(3) algebra matrices dρ(J_k) of flat feature layouts, for CR's analytic Lie derivative (CR §3).

``J_x, J_y, J_z`` are the standard basis of so(3) (SPEC §1.5); a cartesian 3-vector block carries them
unchanged, a scalar block carries zeros, and a type-``l`` e3nn irrep carries e3nn's ``so3_generators(l)``
(e3nn 0.6 uses the cartesian ``(x, y, z)`` basis for ``1o``, so both conventions agree for ``l = 1``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from e3nn import o3
from e3nn.o3._wigner import change_basis_real_to_complex

__all__ = ["SO3_GENERATORS", "cartesian_algebra", "irreps_algebra", "so3_generators64"]

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


def so3_generators64(l: int) -> torch.Tensor:  # noqa: E741
    """e3nn's ``o3.so3_generators(l)`` computed in float64 (e3nn builds them in the default dtype).

    Shapes:
        - **output:** ``(3, 2l + 1, 2l + 1)``; for ``l = 1`` exactly ``SO3_GENERATORS``
    """
    m = torch.arange(-l, l + 1, dtype=torch.float64)
    raising = torch.diag(-torch.sqrt(l * (l + 1) - m[:-1] * (m[:-1] + 1)), diagonal=-1).to(torch.complex128)
    lowering = torch.diag(torch.sqrt(l * (l + 1) - m[1:] * (m[1:] - 1)), diagonal=1).to(torch.complex128)
    su2 = torch.stack([0.5 * (raising + lowering), torch.diag(1j * m), -0.5j * (raising - lowering)])
    q = change_basis_real_to_complex(l, dtype=torch.float64)
    return torch.real(torch.conj(q.T) @ su2 @ q)


def irreps_algebra(irreps: str | o3.Irreps, dtype: torch.dtype | None = None) -> torch.Tensor:
    """Block-diagonal ``(3, d, d)`` algebra matrices of e3nn ``irreps``: ``so3_generators(l)`` per copy.

    They satisfy ``Irreps.D_from_matrix(expm(t J_k)) = expm(t · out[k])``.

    Shapes:
        - **output:** ``(3, irreps.dim, irreps.dim)``
    """
    irreps = o3.Irreps(irreps)
    blocks = [so3_generators64(ir.l) for mul, ir in irreps for _ in range(mul)]
    out = torch.stack([torch.block_diag(*(b[k] for b in blocks)) for k in range(3)])
    return out.to(dtype or torch.get_default_dtype())
