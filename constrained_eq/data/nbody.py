r"""The charged-particle N-body benchmark (Kipf et al. 2018, 3D version of EGNN/SEGNN; SPEC §4.1).

Five unit-mass particles with charges :math:`q_i \in \{-1, +1\}` move under
:math:`F_i = \sum_{j \ne i} q_i q_j (x_i - x_j) / \|x_i - x_j\|^3 + q_i E` (like charges repel,
:math:`E` an optional constant field), clipped per axis to :math:`[-100, 100]` as in the benchmark.
"""

from __future__ import annotations

import hashlib
import inspect
import io
import json
import os
import warnings
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from constrained_eq._utils.atomic_io import atomic_write_bytes, require_regular_file
from constrained_eq.data._common import cache_root

__all__ = [
    "NBodyDataset", "NBodyBatch", "charged_forces", "integrate_charged", "simulate_nbody", "load_nbody",
    "nbody_cache_path", "join_batches",
]

_CLIPS = ("axis", "norm", "none")
_SPLITS = ("train", "val", "test")
_VERSION = 1
# nbody_small: the generator draws 10,000 train, then 2,000 val, then 2,000 test trajectories from one stream.
_POOL = {"train": 10_000, "val": 2_000, "test": 2_000}


def _check_clip(clip: str) -> None:
    if clip not in _CLIPS:
        raise ValueError(f"Expected 'clip' to be one of 'axis', 'norm', 'none' (got {clip!r})")


def _check_field(field: Sequence[float] | None) -> np.ndarray | None:
    if field is None:
        return None
    arr = np.asarray(field, dtype=np.float64)
    if arr.shape != (3,) or not np.all(np.isfinite(arr)):
        raise ValueError(f"Expected 'field' to be None or three finite numbers (fx, fy, fz) (got {field!r})")
    return arr


def charged_forces(
    loc: np.ndarray,
    charges: np.ndarray,
    *,
    clip: str = "axis",
    max_force: float = 100.0,
    field: Sequence[float] | None = None,
) -> np.ndarray:
    r"""Coulomb forces :math:`F_i = \sum_{j\ne i} q_i q_j (x_i-x_j)/\|x_i-x_j\|^3 + q_i E`, then clipped.

    ``clip="axis"`` clips each component to ``[-max_force, max_force]`` (the benchmark; not rotation
    equivariant), ``"norm"`` rescales each particle's force to norm at most ``max_force`` (rotation
    equivariant), ``"none"`` does not clip. The field is added before clipping.

    Shapes:
        - **loc:** ``(B, N, 3)``
        - **charges:** ``(B, N)``
        - **output:** ``(B, N, 3)``
    """
    _check_clip(clip)
    efield = _check_field(field)
    n = loc.shape[1]
    diff = loc[:, :, None, :] - loc[:, None, :, :]
    r2 = np.einsum("bijd,bijd->bij", diff, diff)
    diag = np.eye(n, dtype=bool)
    r2[:, diag] = 1.0
    coupling = charges[:, :, None] * charges[:, None, :] / (r2 * np.sqrt(r2))
    coupling[:, diag] = 0.0
    force = np.einsum("bij,bijd->bid", coupling, diff)
    if efield is not None:
        force += charges[:, :, None] * efield
    if clip == "axis":
        np.clip(force, -max_force, max_force, out=force)
    elif clip == "norm":
        norm = np.sqrt(np.einsum("bid,bid->bi", force, force))
        force *= np.minimum(1.0, max_force / np.maximum(norm, 1e-300))[..., None]
    return force


def integrate_charged(
    loc: np.ndarray,
    vel: np.ndarray,
    charges: np.ndarray,
    save_steps: Sequence[int],
    *,
    dt: float = 1e-3,
    clip: str = "axis",
    max_force: float | None = None,
    field: Sequence[float] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    r"""Integrate the benchmark's scheme from an initial state and return the states at ``save_steps``.

    One initial kick :math:`v \mathrel{+}= dt\,F(x)`, then for steps :math:`s = 1, 2, \dots`:
    :math:`x \mathrel{+}= dt\,v`; save :math:`(x, v)` if :math:`s` is in ``save_steps``;
    :math:`v \mathrel{+}= dt\,F(x)`. ``max_force`` defaults to ``0.1 / dt``. Inputs are not modified.

    Shapes:
        - **loc, vel:** ``(B, N, 3)``
        - **charges:** ``(B, N)``
        - **output:** two arrays ``(len(save_steps), B, N, 3)``
    """
    steps = sorted(int(s) for s in save_steps)
    if not steps or steps[0] < 1:
        raise ValueError(f"Expected 'save_steps' to be positive step numbers (got {list(save_steps)!r})")
    max_f = 0.1 / dt if max_force is None else float(max_force)
    x = np.array(loc, dtype=np.float64)
    v = np.array(vel, dtype=np.float64)
    q = np.asarray(charges, dtype=np.float64)
    out_x = np.empty((len(steps),) + x.shape)
    out_v = np.empty_like(out_x)
    index = {s: k for k, s in enumerate(steps)}
    v += dt * charged_forces(x, q, clip=clip, max_force=max_f, field=field)
    for s in range(1, steps[-1] + 1):
        x += dt * v
        if s in index:
            out_x[index[s]], out_v[index[s]] = x, v
        if s < steps[-1]:
            v += dt * charged_forces(x, q, clip=clip, max_force=max_f, field=field)
    order = [index[s] for s in (int(t) for t in save_steps)]
    return out_x[order], out_v[order]


def _initial_conditions(n_per_split: dict[str, int], seed: int, n_balls: int) -> dict[str, tuple[np.ndarray, ...]]:
    """Draw (charges, loc, vel) exactly as the EGNN generator does, one trajectory after the other."""
    rng = np.random.RandomState(seed)
    t_save = 49  # the generator saves 49 frames and draws (zero-variance) noise for them: keep the stream
    out = {}
    for split in _SPLITS:
        n_draw = max(n_per_split[split], _POOL[split])
        q = np.empty((n_draw, n_balls))
        x = np.empty((n_draw, n_balls, 3))
        v = np.empty((n_draw, n_balls, 3))
        for i in range(n_draw):
            q[i] = rng.choice([-1.0, 0.0, 1.0], size=(n_balls, 1), p=[0.5, 0.0, 0.5])[:, 0]
            x[i] = (rng.randn(3, n_balls) * (n_balls / 5) ** (1 / 3)).T
            v0 = rng.randn(3, n_balls)
            v[i] = (v0 * 0.5 / np.sqrt((v0**2).sum(axis=0, keepdims=True))).T
            rng.randn(t_save, 3, n_balls)
            rng.randn(t_save, 3, n_balls)
        n = n_per_split[split]
        out[split] = (q[:n], x[:n], v[:n])
    return out


def simulate_nbody(
    n_train: int = 3000,
    n_val: int = 2000,
    n_test: int = 2000,
    *,
    seed: int = 43,
    n_balls: int = 5,
    frame_in: int = 30,
    frame_out: int = 40,
    dt: float = 1e-3,
    clip: str = "axis",
    field: Sequence[float] | None = None,
    chunk: int = 1000,
) -> dict[str, np.ndarray]:
    """Simulate all splits; return ``{f"{split}_{name}"}`` arrays for name in loc, vel, charges, target.

    Frame ``k`` is the state at step ``100 (k + 1)``. Arrays are float64: ``loc``/``vel``/``target``
    ``(n, N, 3)`` and ``charges`` ``(n, N)``.
    """
    _check_clip(clip)
    _check_field(field)
    sizes = {"train": n_train, "val": n_val, "test": n_test}
    for name, value in sizes.items():
        if not isinstance(value, int) or value < 0:
            raise ValueError(f"Expected 'n_{name}' to be a non-negative int (got {value!r})")
    if not 0 <= frame_in < frame_out:
        raise ValueError(f"Expected 0 <= 'frame_in' < 'frame_out' (got {frame_in!r}, {frame_out!r})")
    steps = (100 * (frame_in + 1), 100 * (frame_out + 1))
    arrays: dict[str, np.ndarray] = {}
    for split, (q, x0, v0) in _initial_conditions(sizes, seed, n_balls).items():
        xs = np.empty((2, len(q), n_balls, 3))
        vs = np.empty_like(xs)
        for a in range(0, len(q), chunk):
            b = slice(a, a + chunk)
            xs[:, b], vs[:, b] = integrate_charged(x0[b], v0[b], q[b], steps, dt=dt, clip=clip, field=field)
        arrays.update({f"{split}_loc": xs[0], f"{split}_vel": vs[0], f"{split}_charges": q, f"{split}_target": xs[1]})
    return arrays


def nbody_cache_path(root: str | os.PathLike | None = None, **params: Any) -> Path:
    """The file :func:`load_nbody` reads and writes for these parameters (a hash of all of them).

    Arrays simulated elsewhere (e.g. by the benchmark's own generator) can be written there with
    ``np.savez`` to train on them: ``{split}_{name}`` for split in train/val/test and name in
    loc/vel/charges/target, float arrays ``(n, N, 3)`` (charges ``(n, N)``).
    """
    if "field" in params and params["field"] is not None:
        params["field"] = [float(f) for f in _check_field(params["field"])]
    key_src = json.dumps({"version": _VERSION, **params}, sort_keys=True)
    key = hashlib.sha256(key_src.encode()).hexdigest()[:20]
    folder = Path(root) if root is not None else cache_root()
    return folder / f"nbody_{key}.npz"


def _cache_mismatch(arrays: dict[str, np.ndarray], params: dict[str, Any]) -> str | None:
    """What in a cache's arrays differs from what ``params`` ask for (``None``: nothing).

    Each split holds as many trajectories as asked (``n_train``/``n_val``/``n_test``) of ``n_balls``
    particles (``loc``/``vel``/``target`` ``(n, N, 3)``, ``charges`` ``(n, N)``), in float32 or wider,
    every value finite.
    """
    defaults = inspect.signature(simulate_nbody).parameters
    n_balls = params.get("n_balls", defaults["n_balls"].default)
    for split in ("train", "val", "test"):
        rows = params.get(f"n_{split}", defaults[f"n_{split}"].default)
        for name in ("loc", "vel", "charges", "target"):
            key, array = f"{split}_{name}", arrays[f"{split}_{name}"]
            shape = (rows, n_balls) if name == "charges" else (rows, n_balls, 3)
            if array.shape != shape:
                return f"key {key!r}: shape {tuple(array.shape)}, expected {shape}"
            if array.dtype.itemsize < 4:
                return f"key {key!r}: dtype {array.dtype}, expected float32 or float64"
            if not np.isfinite(array).all():
                return f"key {key!r}: {int((~np.isfinite(array)).sum())} non-finite values"
    return None


def load_nbody(root: str | os.PathLike | None = None, **params: Any) -> dict[str, np.ndarray]:
    """Return :func:`simulate_nbody` arrays, cached in ``root`` under a hash of all parameters.

    The cache file is written to a temporary file and moved into place with :func:`os.replace`, so a
    concurrent reader never sees a partial file. ``root`` defaults to ``$CEQ_CACHE`` or
    ``~/.cache/constrained_eq``. The cache is read with ``allow_pickle=False``: a file holding object
    arrays (pickles), a corrupt one or one that lacks an array is simulated again (with a warning),
    never unpickled.
    """
    path = nbody_cache_path(root, **params)
    require_regular_file(path)  # a FIFO or a device in its place would block or never end
    if path.exists():
        try:
            with np.load(path, allow_pickle=False) as data:  # never unpickles: object arrays are refused
                arrays = {name: data[name] for name in data.files}
            expected = {f"{split}_{name}" for split in ("train", "val", "test")
                        for name in ("loc", "vel", "charges", "target")}
            if set(arrays) != expected or any(a.dtype.kind != "f" for a in arrays.values()):
                raise KeyError(f"arrays {sorted(arrays)} instead of {sorted(expected)} (float)")
            mismatch = _cache_mismatch(arrays, params)
            if mismatch is None:
                return arrays
            warnings.warn(f"{path}: not the N-body cache these parameters ask for ({mismatch}); simulating again",
                          RuntimeWarning, stacklevel=2)
        except (ValueError, OSError, EOFError, KeyError, zipfile.BadZipFile) as err:
            warnings.warn(f"{path}: not a plain N-body cache ({type(err).__name__}: {err}); nothing in it was run, "
                          "simulating again", RuntimeWarning, stacklevel=2)
    arrays = simulate_nbody(**params)
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    atomic_write_bytes(path, buffer.getvalue())
    return arrays


class NBodyBatch(NamedTuple):
    """A batch of fully connected N-body graphs, nodes stacked graph after graph."""

    loc: torch.Tensor  # (B*N, 3) positions at frame_in
    vel: torch.Tensor  # (B*N, 3) velocities at frame_in
    charges: torch.Tensor  # (B*N, 1)
    target: torch.Tensor  # (B*N, 3) positions at frame_out
    edge_index: torch.Tensor  # (2, B*N*(N-1)), row = receiver i, col = sender j
    batch: torch.Tensor  # (B*N,) graph index of each node
    num_graphs: int


def fully_connected_edges(num_graphs: int, n_nodes: int, device: torch.device | None = None) -> torch.Tensor:
    """Edge index ``(2, num_graphs·n·(n-1))`` of ``num_graphs`` fully connected graphs without self loops."""
    row, col = torch.meshgrid(torch.arange(n_nodes, device=device), torch.arange(n_nodes, device=device), indexing="ij")
    mask = row != col
    one = torch.stack([row[mask], col[mask]])
    offset = (torch.arange(num_graphs, device=device) * n_nodes).repeat_interleave(one.shape[1])
    return one.repeat(1, num_graphs) + offset


def join_batches(first: NBodyBatch, second: NBodyBatch) -> NBodyBatch:
    """One batch holding the graphs of ``first`` then those of ``second`` (node and graph indices shifted)."""
    nodes = first.loc.shape[0]
    return NBodyBatch(*(torch.cat([a, b]) for a, b in zip(first[:4], second[:4], strict=True)),
                      torch.cat([first.edge_index, second.edge_index + nodes], dim=1),
                      torch.cat([first.batch, second.batch + first.num_graphs]), first.num_graphs + second.num_graphs)


class NBodyDataset(Dataset):
    r"""One split of the charged-particle N-body benchmark (EGNN/SEGNN "nbody_small"; SPEC §4.1).

    Protocol: legacy ``numpy.random.RandomState(seed)`` drawing, per trajectory and in the order
    train (pool of 10,000), val (2,000), test (2,000): charges :math:`q_i \in \{-1, +1\}` (p = 1/2),
    positions :math:`x_i \sim N(0, I_3)`, velocities a Gaussian direction of norm 0.5 (and the
    generator's zero-variance noise draws, so the stream matches it). Split ``s`` uses the first
    ``n_s`` trajectories of its pool. Integration with ``dt = 0.001`` (see :func:`integrate_charged`),
    force clip ``0.1/dt = 100`` per axis (``clip="axis"``, the benchmark), per particle norm
    (``"norm"``, exactly rotation equivariant) or none; optional constant field ``E`` adding
    :math:`q_i E`. A sample is frame 30 (step 3100) positions, velocities and charges; the target is
    frame 40 (step 4100) positions. Arrays are cached (see :func:`load_nbody`).

    Args:
        split (str): ``"train"``, ``"val"`` or ``"test"``.
        root (str, optional): Cache folder (default: ``$CEQ_CACHE`` or ``~/.cache/constrained_eq``).
        n_train, n_val, n_test (int, optional): Split sizes (default: 3000, 2000, 2000).
        seed (int, optional): Generator seed (default: :obj:`43`, as nbody_small).
        clip (str, optional): ``"axis"``, ``"norm"`` or ``"none"`` (default: :obj:`"axis"`).
        field (tuple of 3 floats, optional): Constant external field ``E`` (default: :obj:`None`).
        frame_in, frame_out (int, optional): Input and target frames (default: 30, 40).
        dtype (torch.dtype, optional): Tensor dtype (default: :obj:`torch.float32`).

    Shapes:
        - **sample:** ``(loc (N, 3), vel (N, 3), charges (N, 1), target (N, 3))``
        - **batch:** :class:`NBodyBatch` from :meth:`collate`
    """

    def __init__(
        self,
        split: str,
        root: str | os.PathLike | None = None,
        n_train: int = 3000,
        n_val: int = 2000,
        n_test: int = 2000,
        *,
        seed: int = 43,
        clip: str = "axis",
        field: Sequence[float] | None = None,
        frame_in: int = 30,
        frame_out: int = 40,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        if split not in _SPLITS:
            raise ValueError(f"Expected 'split' to be one of 'train', 'val', 'test' (got {split!r})")
        _check_clip(clip)
        self.split = split
        params = dict(n_train=n_train, n_val=n_val, n_test=n_test, seed=seed, clip=clip, field=field)
        params.update(frame_in=frame_in, frame_out=frame_out)
        arrays = load_nbody(root, **params)
        self.loc, self.vel, self.target = (
            torch.as_tensor(arrays[f"{split}_{k}"], dtype=dtype) for k in ("loc", "vel", "target")
        )
        self.charges = torch.as_tensor(arrays[f"{split}_charges"], dtype=dtype).unsqueeze(-1)

    def __len__(self) -> int:
        return self.loc.shape[0]

    def __getitem__(self, idx: int) -> tuple[torch.Tensor, ...]:
        return self.loc[idx], self.vel[idx], self.charges[idx], self.target[idx]

    @staticmethod
    def collate(samples: Sequence[tuple[torch.Tensor, ...]]) -> NBodyBatch:
        """Stack samples into one :class:`NBodyBatch` with fully connected edges per graph."""
        loc, vel, charges, target = (torch.stack(parts) for parts in zip(*samples, strict=True))
        b, n = loc.shape[:2]
        batch = torch.arange(b).repeat_interleave(n)
        return NBodyBatch(
            loc.reshape(b * n, 3),
            vel.reshape(b * n, 3),
            charges.reshape(b * n, 1),
            target.reshape(b * n, 3),
            fully_connected_edges(b, n),
            batch,
            b,
        )

    def loader(
        self, batch_size: int = 100, shuffle: bool = False, seed: int | None = None, **kwargs: Any
    ) -> DataLoader:
        """A :class:`~torch.utils.data.DataLoader` over this split that yields :class:`NBodyBatch`."""
        generator = torch.Generator().manual_seed(seed) if seed is not None else None
        return DataLoader(
            self, batch_size=batch_size, shuffle=shuffle, collate_fn=self.collate, generator=generator, **kwargs
        )
