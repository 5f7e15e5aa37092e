r"""Representations: how a group element acts on a flat feature vector.

A representation maps a group element (its defining matrix, from ``group.sample``) to a
``(d, d)`` matrix :math:`\rho(g)`, and gives the algebra matrices :math:`d\rho(A_k)`
(shape ``(K, d, d)``) for the group's Lie-algebra generators :math:`A_k`. Features are
flat: a tensor of shape ``(*, d)`` is acted on as :math:`x \mapsto \rho(g)\,x`.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch

from constrained_eq._utils.checks import check_int
from constrained_eq.symmetry.groups import cartesian_generators

__all__ = ["Rep", "IrrepsRep", "VectorRep", "ScalarRep", "PermutationRep", "DirectSumRep", "linear_part", "act"]


def linear_part(g: torch.Tensor) -> torch.Tensor:
    """The linear block of a group element: ``Q`` of a homogeneous E(3) matrix, else ``g`` itself."""
    return g[..., :3, :3] if g.shape[-1] == 4 else g


@contextlib.contextmanager
def _default_dtype(dtype: torch.dtype):
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(previous)


def _kron(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Batched Kronecker product over the last two axes."""
    out = a[..., :, None, :, None] * b[..., None, :, None, :]
    shape = torch.broadcast_shapes(a.shape[:-2], b.shape[:-2])
    return out.reshape(*shape, a.shape[-2] * b.shape[-2], a.shape[-1] * b.shape[-1])


class Rep:
    """Base of the representations: ``dim``, ``matrix(g)`` and ``lie_algebra()``."""

    dim: int

    def matrix(self, g: torch.Tensor) -> torch.Tensor:
        """ρ(g) for elements ``g`` of shape ``(*, n, n)``; returns ``(*, dim, dim)``."""
        raise NotImplementedError

    def lie_algebra(self, dtype: torch.dtype | None = None) -> torch.Tensor:
        """dρ(A_k) for the group's Lie-algebra generators, shape ``(K, dim, dim)``."""
        raise NotImplementedError

    def __add__(self, other: Rep) -> DirectSumRep:
        return DirectSumRep(self, other)


@dataclass(frozen=True, repr=False)
class IrrepsRep(Rep):
    """O(3)/SO(3) acting on e3nn irreps features (Wigner D-matrices from e3nn).

    Args:
        irreps (str or e3nn.o3.Irreps): The irreps, e.g. ``"8x0e+2x1o"``.

    Examples:
        >>> rep = IrrepsRep("8x0e+2x1o")
        >>> rep, rep.dim, tuple(rep.lie_algebra().shape)
        (IrrepsRep("8x0e+2x1o"), 14, (3, 14, 14))
    """

    irreps: str

    def __post_init__(self) -> None:
        from e3nn import o3

        try:
            irreps = o3.Irreps(self.irreps)
        except (ValueError, AssertionError, TypeError):
            msg = f"Expected 'irreps' to be an e3nn irreps string like '8x0e+2x1o' (got {self.irreps!r})"
            raise ValueError(msg) from None
        object.__setattr__(self, "irreps", str(irreps))

    @property
    def dim(self) -> int:
        from e3nn import o3

        return o3.Irreps(self.irreps).dim

    def __repr__(self) -> str:
        return f'IrrepsRep("{self.irreps}")'

    def matrix(self, g: torch.Tensor) -> torch.Tensor:
        from e3nn import o3

        q = linear_part(g)
        # e3nn builds its Wigner constants in the default dtype: match g's so float64 stays exact
        with _default_dtype(torch.float64 if q.dtype == torch.float64 else torch.get_default_dtype()):
            return o3.Irreps(self.irreps).D_from_matrix(q)

    def lie_algebra(self, dtype: torch.dtype | None = None) -> torch.Tensor:
        from e3nn import o3
        from e3nn.math import direct_sum

        dtype = dtype or torch.get_default_dtype()
        with _default_dtype(torch.float64):  # e3nn builds them in the default dtype
            blocks = [o3.so3_generators(ir.l) for mul, ir in o3.Irreps(self.irreps) for _ in range(mul)]
            if not blocks:
                return torch.zeros(3, 0, 0, dtype=dtype)
            return torch.stack([direct_sum(*[b[k] for b in blocks]) for k in range(3)]).to(dtype)


@dataclass(frozen=True, repr=False)
class VectorRep(Rep):
    """``channels`` cartesian vectors ``X ∈ R^{C×dim}`` flattened row-major, acted on by ``X ↦ X Qᵀ``.

    ρ(g) = I_C ⊗ Q with Q the linear part of ``g`` (Vector Neurons; SO(2)/C_n with ``dim=2``).

    Examples:
        >>> VectorRep(2).dim
        6
    """

    channels: int
    vector_dim: int = 3

    def __post_init__(self) -> None:
        check_int(self.channels, "channels")
        if self.vector_dim not in (2, 3):
            raise ValueError(f"Expected 'vector_dim' to be 2 or 3 (got {self.vector_dim!r})")

    @property
    def dim(self) -> int:
        return self.channels * self.vector_dim

    def __repr__(self) -> str:
        extra = "" if self.vector_dim == 3 else f", vector_dim={self.vector_dim}"
        return f"VectorRep({self.channels}{extra})"

    def matrix(self, g: torch.Tensor) -> torch.Tensor:
        q = linear_part(g)
        return _kron(torch.eye(self.channels, dtype=q.dtype, device=q.device), q)

    def lie_algebra(self, dtype: torch.dtype | None = None) -> torch.Tensor:
        gens = cartesian_generators(self.vector_dim, dtype=dtype)
        eye = torch.eye(self.channels, dtype=gens.dtype)
        return torch.stack([torch.kron(eye, a) for a in gens])


@dataclass(frozen=True, repr=False)
class ScalarRep(Rep):
    """``n`` invariant features: ρ(g) = I, dρ(A) = 0 (``num_generators`` copies).

    Examples:
        >>> ScalarRep(4).lie_algebra().abs().sum()
        tensor(0.)
    """

    n: int
    num_generators: int = 3

    def __post_init__(self) -> None:
        check_int(self.n, "n", at_least=0)

    @property
    def dim(self) -> int:
        return self.n

    def __repr__(self) -> str:
        extra = "" if self.num_generators == 3 else f", num_generators={self.num_generators}"
        return f"ScalarRep({self.n}{extra})"

    def matrix(self, g: torch.Tensor) -> torch.Tensor:
        eye = torch.eye(self.n, dtype=g.dtype, device=g.device)
        return eye.expand(*g.shape[:-2], self.n, self.n)

    def lie_algebra(self, dtype: torch.dtype | None = None) -> torch.Tensor:
        return torch.zeros(self.num_generators, self.n, self.n, dtype=dtype or torch.get_default_dtype())


@dataclass(frozen=True, repr=False)
class PermutationRep(Rep):
    """S_n acting on node features ``X ∈ R^{n×d}`` flattened row-major: ρ(P) = P ⊗ I_d.

    Examples:
        >>> PermutationRep(3, 2).dim
        6
    """

    n: int
    features: int = 1

    @property
    def dim(self) -> int:
        return self.n * self.features

    def __repr__(self) -> str:
        return f"PermutationRep({self.n}, {self.features})"

    def matrix(self, g: torch.Tensor) -> torch.Tensor:
        if g.shape[-1] != self.n:
            raise ValueError(f"Expected group elements of shape (*, {self.n}, {self.n}) (got {tuple(g.shape)})")
        return _kron(g, torch.eye(self.features, dtype=g.dtype, device=g.device))

    def lie_algebra(self, dtype: torch.dtype | None = None) -> torch.Tensor:
        raise ValueError(f"Expected a representation of a continuous group (got {self!r}, S_n is finite)")


class DirectSumRep(Rep):
    """Block-diagonal direct sum ρ_1 ⊕ ρ_2 ⊕ … acting on concatenated features.

    Scalar parts adapt their number of zero generators to the other summands.

    Examples:
        >>> ScalarRep(2) + VectorRep(1)
        DirectSumRep(ScalarRep(2), VectorRep(1))
    """

    def __init__(self, *reps: Rep) -> None:
        flat: list[Rep] = []
        for rep in reps:
            if not isinstance(rep, Rep):
                raise TypeError(f"Expected every summand to be a Rep (got {type(rep).__name__})")
            flat.extend(rep.reps if isinstance(rep, DirectSumRep) else [rep])
        self.reps = tuple(flat)

    @property
    def dim(self) -> int:
        return sum(rep.dim for rep in self.reps)

    def __repr__(self) -> str:
        return f"DirectSumRep({', '.join(map(repr, self.reps))})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, DirectSumRep) and other.reps == self.reps

    def __hash__(self) -> int:
        return hash(self.reps)

    def matrix(self, g: torch.Tensor) -> torch.Tensor:
        blocks = [rep.matrix(g) for rep in self.reps]
        out = g.new_zeros(*g.shape[:-2], self.dim, self.dim)
        start = 0
        for block in blocks:
            stop = start + block.shape[-1]
            out[..., start:stop, start:stop] = block
            start = stop
        return out

    def lie_algebra(self, dtype: torch.dtype | None = None) -> torch.Tensor:
        algebras = [None if isinstance(r, ScalarRep) else r.lie_algebra(dtype) for r in self.reps]
        ks = {a.shape[0] for a in algebras if a is not None}
        if len(ks) > 1:
            raise ValueError(f"Expected the summands to share one number of generators (got {sorted(ks)})")
        k = ks.pop() if ks else 3
        dtype = dtype or torch.get_default_dtype()
        out = torch.zeros(k, self.dim, self.dim, dtype=dtype)
        start = 0
        for rep, algebra in zip(self.reps, algebras, strict=True):
            stop = start + rep.dim
            if algebra is not None:
                out[:, start:stop, start:stop] = algebra
            start = stop
        return out


def act(rep: Rep, g: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Apply ρ(g) to the last ``rep.dim`` features of ``x`` (or its last two axes, flattened).

    Args:
        rep: The representation.
        g: Group elements, shape ``(n, m, m)``.
        x: Features, shape ``(B, *, d)`` or ``(B, *, C, 3)`` with ``C·3 = d``.

    Returns:
        Tensor: shape ``(n, B, *)`` as ``x``, the ``n`` transformed copies.
    """
    d = rep.dim
    mats = rep.matrix(g).to(x.dtype)
    if x.shape[-1] == d:
        flat, shape = x, x.shape
    elif x.dim() >= 2 and x.shape[-2] * x.shape[-1] == d:
        flat, shape = x.flatten(-2), x.shape
    else:
        raise ValueError(
            f"Expected the last axis (or last two axes) of x to have size {d} for {rep!r} (got {tuple(x.shape)})"
        )
    out = torch.einsum("nij,...j->n...i", mats, flat)
    return out.reshape(mats.shape[0], *shape)

