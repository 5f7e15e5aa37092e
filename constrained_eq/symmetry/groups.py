"""Groups as small immutable values: SO(3), O(3), E(3), SO(2), C(n), S(n).

A group knows how to draw Haar-random elements in its defining matrix form, its Lie-algebra
generators (continuous groups) or a generating set (finite groups), and prints as its own
constructor call so that ``parse_group(repr(g)) == g``.
"""

from __future__ import annotations

import ast
import math
from dataclasses import dataclass
from typing import ClassVar

import torch

from constrained_eq._utils.checks import check_int
from constrained_eq.symmetry.haar import random_rotation

__all__ = ["Group", "SO", "O", "E", "C", "S", "parse_group", "register_group", "cartesian_generators"]


def cartesian_generators(dim: int = 3, *, dtype: torch.dtype | None = None) -> torch.Tensor:
    r"""Standard basis of so(dim) acting on cartesian vectors, shape ``(K, dim, dim)``.

    For ``dim = 3`` these are :math:`J_x, J_y, J_z` with :math:`e^{tJ_z}` the rotation by ``t``
    about the z axis (CR §3); for ``dim = 2`` the single generator ``[[0, -1], [1, 0]]``.

    Examples:
        >>> cartesian_generators(3)[2]
        tensor([[ 0., -1.,  0.],
                [ 1.,  0.,  0.],
                [ 0.,  0.,  0.]])
    """
    dtype = dtype or torch.get_default_dtype()
    if dim == 2:
        return torch.tensor([[[0.0, -1.0], [1.0, 0.0]]], dtype=dtype)
    if dim == 3:
        jx = [[0.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]]
        jy = [[0.0, 0.0, 1.0], [0.0, 0.0, 0.0], [-1.0, 0.0, 0.0]]
        jz = [[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 0.0]]
        return torch.tensor([jx, jy, jz], dtype=dtype)
    raise ValueError(f"Expected 'dim' to be 2 or 3 (got {dim!r})")


@dataclass(frozen=True)
class Group:
    """Base of the groups. Subclasses set ``symbol`` and the flags below.

    Attributes:
        is_continuous: ``True`` for Lie groups (they have ``lie_algebra()``).
        dim: Size of the defining matrices returned by :meth:`sample`.
    """

    n: int

    symbol: ClassVar[str] = ""
    is_continuous: ClassVar[bool] = True

    def __repr__(self) -> str:
        return f"{self.symbol}({self.n})"

    @property
    def dim(self) -> int:
        return self.n

    def sample(
        self,
        n: int = 1,
        generator: torch.Generator | None = None,
        dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
    ) -> torch.Tensor:
        """Draw ``n`` Haar-random elements as matrices of shape ``(n, dim, dim)``."""
        raise NotImplementedError

    def lie_algebra(self, dtype: torch.dtype | None = None) -> torch.Tensor:
        """Generators of the Lie algebra in the defining representation, shape ``(K, dim, dim)``."""
        raise ValueError(
            f"Expected a continuous group for 'lie_algebra()' (got {self!r}, a finite group); "
            "use its generating set 'generators()' instead"
        )

    def generators(self, dtype: torch.dtype | None = None) -> torch.Tensor:
        """A generating set of the group (finite groups), shape ``(K, dim, dim)``."""
        raise ValueError(f"Expected a finite group for 'generators()' (got {self!r}); use 'lie_algebra()' instead")


@dataclass(frozen=True, repr=False)
class SO(Group):
    """Special orthogonal group SO(n), n ∈ {2, 3}, as rotation matrices.

    Examples:
        >>> SO(3)
        SO(3)
        >>> SO(3).sample(2).shape
        torch.Size([2, 3, 3])
    """

    n: int = 3
    symbol: ClassVar[str] = "SO"

    def __post_init__(self) -> None:
        if self.n not in (2, 3):
            raise ValueError(f"Expected 'n' to be 2 or 3 for SO(n) (got {self.n!r})")

    def sample(self, n=1, generator=None, dtype=None, device=None) -> torch.Tensor:
        dtype = dtype or torch.get_default_dtype()
        if self.n == 3:
            return random_rotation(generator, dtype, device, batch=n)
        angle = 2 * math.pi * torch.rand(n, generator=generator, dtype=dtype, device=device)
        return _rotation_2d(angle)

    def lie_algebra(self, dtype=None) -> torch.Tensor:
        return cartesian_generators(self.n, dtype=dtype)


@dataclass(frozen=True, repr=False)
class O(Group):
    """Orthogonal group O(3): rotations and reflections (det = ±1 with probability 1/2 each).

    Examples:
        >>> O(3)
        O(3)
    """

    n: int = 3
    symbol: ClassVar[str] = "O"

    def __post_init__(self) -> None:
        if self.n != 3:
            raise ValueError(f"Expected 'n' to be 3 for O(n) (got {self.n!r})")

    def sample(self, n=1, generator=None, dtype=None, device=None) -> torch.Tensor:
        dtype = dtype or torch.get_default_dtype()
        rotations = random_rotation(generator, dtype, device, batch=n)
        signs = torch.randint(0, 2, (n,), generator=generator, device=device).to(dtype) * 2 - 1
        return rotations * signs[:, None, None]

    def lie_algebra(self, dtype=None) -> torch.Tensor:
        return cartesian_generators(3, dtype=dtype)


@dataclass(frozen=True, repr=False)
class E(Group):
    """Euclidean group E(3) as homogeneous ``(4, 4)`` matrices ``[[Q, t], [0, 1]]``, Q ∈ O(3).

    Translations are drawn from N(0, 1) (E(3) has no normalised Haar measure). Linear
    representations (vectors, irreps) see only the orthogonal block ``Q``; use
    :func:`~constrained_eq.symmetry.reps.linear_part` to read it.

    Examples:
        >>> E(3).sample(2).shape
        torch.Size([2, 4, 4])
    """

    n: int = 3
    symbol: ClassVar[str] = "E"

    def __post_init__(self) -> None:
        if self.n != 3:
            raise ValueError(f"Expected 'n' to be 3 for E(n) (got {self.n!r})")

    @property
    def dim(self) -> int:
        return 4

    def sample(self, n=1, generator=None, dtype=None, device=None) -> torch.Tensor:
        dtype = dtype or torch.get_default_dtype()
        out = torch.zeros(n, 4, 4, dtype=dtype, device=device)
        out[:, :3, :3] = O(3).sample(n, generator, dtype, device)
        out[:, :3, 3] = torch.randn(n, 3, generator=generator, dtype=dtype, device=device)
        out[:, 3, 3] = 1
        return out

    def lie_algebra(self, dtype=None) -> torch.Tensor:
        """The rotation generators (the part of e(3) that acts on linear representations)."""
        return cartesian_generators(3, dtype=dtype)


def _rotation_2d(angle: torch.Tensor) -> torch.Tensor:
    c, s = torch.cos(angle), torch.sin(angle)
    return torch.stack([torch.stack([c, -s], -1), torch.stack([s, c], -1)], -2)


@dataclass(frozen=True, repr=False)
class C(Group):
    """Cyclic group C_n of rotations of the plane by multiples of 2π/n, as ``(2, 2)`` matrices.

    Examples:
        >>> C(4)
        C(4)
        >>> C(4).generators().round() + 0.0
        tensor([[[ 0., -1.],
                 [ 1.,  0.]]])
    """

    symbol: ClassVar[str] = "C"
    is_continuous: ClassVar[bool] = False

    def __post_init__(self) -> None:
        check_int(self.n, "n", what="an integer ≥ 1 for C(n)")

    @property
    def dim(self) -> int:
        return 2

    def sample(self, n=1, generator=None, dtype=None, device=None) -> torch.Tensor:
        dtype = dtype or torch.get_default_dtype()
        k = torch.randint(0, self.n, (n,), generator=generator, device=device).to(dtype)
        return _rotation_2d(2 * math.pi * k / self.n)

    def generators(self, dtype=None) -> torch.Tensor:
        return _rotation_2d(torch.tensor([2 * math.pi / self.n], dtype=dtype or torch.get_default_dtype()))


@dataclass(frozen=True, repr=False)
class S(Group):
    """Symmetric group S_n as ``(n, n)`` permutation matrices, ``(P x)_i = x_{π(i)}``.

    Examples:
        >>> S(3).generators()[0]
        tensor([[0., 1., 0.],
                [1., 0., 0.],
                [0., 0., 1.]])
    """

    symbol: ClassVar[str] = "S"
    is_continuous: ClassVar[bool] = False

    def __post_init__(self) -> None:
        check_int(self.n, "n", what="an integer ≥ 1 for S(n)")

    def sample(self, n=1, generator=None, dtype=None, device=None) -> torch.Tensor:
        dtype = dtype or torch.get_default_dtype()
        keys = torch.rand(n, self.n, generator=generator, device=device)
        perms = keys.argsort(dim=-1)
        eye = torch.eye(self.n, dtype=dtype, device=device)
        return eye[perms]

    def generators(self, dtype=None) -> torch.Tensor:
        """The transposition (0 1) and the cycle (0 1 … n−1)."""
        eye = torch.eye(self.n, dtype=dtype or torch.get_default_dtype())
        swap = list(range(self.n))
        if self.n > 1:
            swap[0], swap[1] = 1, 0
        cycle = [(i + 1) % self.n for i in range(self.n)]
        return torch.stack([eye[swap], eye[cycle]])


_GROUPS: dict[str, type[Group]] = {}  # the registry: symbol -> class, filled by register_group


def register_group(symbol: str, cls: type[Group]) -> type[Group]:
    """Make the group class ``cls`` known by ``symbol`` (``ceq.register_group``).

    ``parse_group("<symbol>(n)")`` and problem files (``LieDerivative(group="<symbol>(n)")``) then build it.
    Returns ``cls``.

    ``cls`` must subclass :class:`Group`; its ``symbol`` is set when empty and must equal ``symbol`` otherwise.

    Raises:
        TypeError: If ``cls`` is not a :class:`Group` subclass.
        ValueError: If ``symbol`` is not an identifier or differs from ``cls.symbol``.
    """
    if not isinstance(symbol, str) or not symbol.isidentifier():
        raise ValueError(f"Expected 'symbol' to be a Python identifier (got {symbol!r})")
    if not isinstance(cls, type) or not issubclass(cls, Group):
        raise TypeError(f"Expected 'cls' to be a Group subclass (got {cls!r})")
    if not cls.symbol:
        cls.symbol = symbol
    elif cls.symbol != symbol:
        raise ValueError(f"Expected 'symbol' to be the class's own symbol {cls.symbol!r} (got {symbol!r})")
    _GROUPS[symbol] = cls
    return cls


for _cls in (SO, O, E, C, S):
    register_group(_cls.symbol, _cls)
del _cls


def parse_group(text: str) -> Group:
    """Parse the repr of a group back into the group.

    Examples:
        >>> parse_group("C(4)") == C(4)
        True
    """
    try:
        call = ast.parse(str(text).strip(), mode="eval").body
    except SyntaxError:
        call = None
    if (
        not isinstance(call, ast.Call)
        or not isinstance(call.func, ast.Name)
        or call.func.id not in _GROUPS
        or len(call.args) != 1
        or call.keywords
        or not isinstance(call.args[0], ast.Constant)
    ):
        choices = ", ".join(f"{k}(n)" for k in _GROUPS)
        raise ValueError(f"Expected 'text' to be one of {choices} (got {text!r})")
    return _GROUPS[call.func.id](call.args[0].value)
