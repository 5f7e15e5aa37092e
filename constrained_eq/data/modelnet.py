"""ModelNet40 point clouds: HDF5 release, raw OFF meshes, point-cloud transforms and a synthetic miniature.

Layouts: the ``modelnet40_ply_hdf5_2048`` HDF5 release and PyG's raw OFF layout. Transforms: Haar rotation,
unit-sphere normalisation, sub-sampling, random point drop.

Samples are ``(points, label)`` with ``points`` a ``(n, 3)`` float32 tensor and ``label`` an int.
Reading HDF5 needs the optional dependency ``h5py``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from torch.utils.data import Dataset

from constrained_eq.data._common import require_files
from constrained_eq.symmetry.haar import random_rotation

__all__ = [
    "ModelNet40H5",
    "ModelNetOFF",
    "read_off",
    "sample_surface",
    "RandomRotation",
    "NormalizeUnitSphere",
    "SubsamplePoints",
    "RandomPointDrop",
    "random_point_drop",
    "Compose",
    "SyntheticShapes",
    "SYNTHETIC_CLASSES",
]

Transform = Callable[[torch.Tensor], torch.Tensor]
_SPLITS = ("train", "test")


def _check_split(split: str) -> None:
    if split not in _SPLITS:
        raise ValueError(f"Expected 'split' to be one of {_SPLITS} (got {split!r})")


class ModelNet40H5(Dataset):
    """ModelNet40 from the ``modelnet40_ply_hdf5_2048`` folder (PointNet/DGCNN release).

    The folder holds ``shape_names.txt`` (40 class names, one a line), ``train_files.txt`` and
    ``test_files.txt`` (one HDF5 path a line; only the base name is used, resolved inside the folder)
    and the listed ``ply_data_*.h5`` files with datasets ``data`` ``(N, 2048, 3)`` float32 and
    ``label`` ``(N, 1)`` integers.

    Args:
        root: The ``modelnet40_ply_hdf5_2048`` folder.
        split: ``"train"`` or ``"test"``.
        transform: Applied to the ``(2048, 3)`` points on access.
    """

    def __init__(self, root: str | os.PathLike[str], split: str = "train", transform: Transform | None = None):
        _check_split(split)
        self.root = require_files(
            root, ["shape_names.txt", f"{split}_files.txt"], "ModelNet40 (HDF5)",
            "Unpack modelnet40_ply_hdf5_2048.zip there.",
        )  # fmt: skip
        self.classes = [s for s in (self.root / "shape_names.txt").read_text().split() if s]
        listed = [Path(s.strip()).name for s in (self.root / f"{split}_files.txt").read_text().splitlines()]
        files = [f for f in listed if f]
        require_files(self.root, files, "ModelNet40 (HDF5)", f"They are listed in '{split}_files.txt'.")
        try:
            import h5py
        except ImportError as err:  # pragma: no cover - depends on the environment
            raise ImportError("ModelNet40H5 needs the optional dependency 'h5py' (pip install h5py)") from err
        points, labels = [], []
        for name in files:
            with h5py.File(self.root / name, "r") as fh:
                points.append(torch.from_numpy(fh["data"][:].astype("float32")))
                labels.append(torch.from_numpy(fh["label"][:].astype("int64")).reshape(-1))
        self.points = torch.cat(points) if points else torch.empty(0, 2048, 3)
        self.labels = torch.cat(labels) if labels else torch.empty(0, dtype=torch.long)
        if self.labels.numel() and not (0 <= int(self.labels.min()) and int(self.labels.max()) < len(self.classes)):
            raise ValueError(
                f"Expected 'label' to be in [0, {len(self.classes)}) (got {self.labels.unique().tolist()})"
            )
        self.transform = transform

    def __len__(self) -> int:
        return self.points.shape[0]

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        pts = self.points[i]
        return (self.transform(pts) if self.transform else pts), int(self.labels[i])


def read_off(path: str | os.PathLike[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """Read an OFF mesh; polygons are fan-triangulated.

    Accepts the ModelNet quirk where the counts follow ``OFF`` on the first line (``OFF490 518 0``)
    and ``#`` comments.

    Returns:
        ``(vertices (V, 3) float32, faces (F, 3) int64)``.
    """
    tokens: list[str] = []
    for line in Path(path).read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            tokens.extend(line.split())
    if not tokens or not tokens[0].startswith("OFF"):
        raise ValueError(f"Expected 'header' of {path} to be 'OFF' (got {tokens[:1]})")
    if tokens[0] != "OFF":
        tokens = ["OFF", tokens[0][3:], *tokens[1:]]
    nv, nf = int(tokens[1]), int(tokens[2])
    pos = 4
    verts = torch.tensor([float(t) for t in tokens[pos : pos + 3 * nv]], dtype=torch.float32).reshape(nv, 3)
    pos += 3 * nv
    tris: list[list[int]] = []
    for _ in range(nf):
        k = int(tokens[pos])
        idx = [int(t) for t in tokens[pos + 1 : pos + 1 + k]]
        pos += 1 + k
        tris.extend([idx[0], idx[j], idx[j + 1]] for j in range(1, k - 1))
    faces = torch.tensor(tris, dtype=torch.long).reshape(-1, 3)
    if faces.numel() and (int(faces.max()) >= nv or int(faces.min()) < 0):
        raise ValueError(f"Expected 'face indices' of {path} to be in [0, {nv}) (got max {int(faces.max())})")
    return verts, faces


def sample_surface(
    verts: torch.Tensor, faces: torch.Tensor, n: int, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Sample ``n`` points uniformly on a triangle mesh surface (area-weighted, seeded).

    Triangles are drawn with probability proportional to area; inside a triangle the point is
    ``(1-√u) a + √u(1-v) b + √u v c`` with ``u, v ~ U(0, 1)`` (uniform on the triangle).
    """
    a, b, c = verts[faces[:, 0]].double(), verts[faces[:, 1]].double(), verts[faces[:, 2]].double()
    area = 0.5 * torch.linalg.cross(b - a, c - a).norm(dim=1)
    if faces.shape[0] == 0 or float(area.sum()) <= 0:
        raise ValueError(f"Expected 'mesh' to have positive surface area (got {float(area.sum()) if len(area) else 0})")
    tri = torch.multinomial(area, n, replacement=True, generator=generator)
    u = torch.rand(n, 1, generator=generator, dtype=torch.float64).sqrt()
    v = torch.rand(n, 1, generator=generator, dtype=torch.float64)
    pts = (1 - u) * a[tri] + u * (1 - v) * b[tri] + u * v * c[tri]
    return pts.float()


class ModelNetOFF(Dataset):
    """ModelNet from raw OFF meshes, ``<root>/<class>/{train,test}/<name>.off`` (PyG's raw layout).

    ``root`` may be the ``ModelNet40`` folder itself, or a folder holding ``ModelNet40/`` or PyG's
    ``raw/``. Every mesh is sampled once at construction with ``num_points`` area-weighted surface
    points; the generator for shape ``i`` is seeded with ``seed * 1_000_003 + i`` (deterministic).

    Args:
        root: Dataset folder.
        split: ``"train"`` or ``"test"``.
        num_points: Points sampled per shape.
        seed: Sampling seed.
        transform: Applied to the ``(num_points, 3)`` points on access.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        split: str = "train",
        num_points: int = 1024,
        seed: int = 0,
        transform: Transform | None = None,
    ) -> None:
        _check_split(split)
        root = Path(root)
        for sub in ("ModelNet40", "raw"):
            if (root / sub).is_dir():
                root = root / sub
                break
        self.classes = sorted(p.name for p in root.glob("*") if (p / split).is_dir()) if root.is_dir() else []
        if not self.classes:
            raise FileNotFoundError(
                f"ModelNet (OFF): no class folders with a '{split}' subfolder in '{root}'. Expected "
                f"'{root}/<class>/{split}/<name>.off' (unpack ModelNet40.zip there). Nothing is downloaded."
            )
        self.files = [
            (f, c) for c, name in enumerate(self.classes) for f in sorted((root / name / split).glob("*.off"))
        ]
        pts = []
        for i, (f, _) in enumerate(self.files):
            gen = torch.Generator().manual_seed(seed * 1_000_003 + i)
            pts.append(sample_surface(*read_off(f), num_points, generator=gen))
        self.points = torch.stack(pts) if pts else torch.empty(0, num_points, 3)
        self.labels = torch.tensor([c for _, c in self.files], dtype=torch.long)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        pts = self.points[i]
        return (self.transform(pts) if self.transform else pts), int(self.labels[i])


# ------------------------------------------------------------------------------------------ transforms
class Compose:
    """Apply transforms in order."""

    def __init__(self, transforms: Sequence[Transform]):
        self.transforms = list(transforms)

    def __call__(self, pts: torch.Tensor) -> torch.Tensor:  # noqa: D102
        for t in self.transforms:
            pts = t(pts)
        return pts


class RandomRotation:
    """Rotate ``(..., n, 3)`` points by a Haar-random SO(3) matrix (one per call): ``x ↦ x Rᵀ``."""

    def __init__(self, generator: torch.Generator | None = None):
        self.generator = generator

    def __call__(self, pts: torch.Tensor) -> torch.Tensor:  # noqa: D102
        rot = random_rotation(self.generator, pts.dtype, pts.device)
        return pts @ rot.T


class NormalizeUnitSphere:
    """Centre the points at their mean and scale so the farthest point has norm 1."""

    def __call__(self, pts: torch.Tensor) -> torch.Tensor:  # noqa: D102
        pts = pts - pts.mean(dim=-2, keepdim=True)
        scale = pts.norm(dim=-1).amax(dim=-1, keepdim=True).clamp_min(1e-12)
        return pts / scale.unsqueeze(-1)


class SubsamplePoints:
    """Keep ``n`` points chosen uniformly without replacement (CR uses ``n = 300``).

    Args:
        n: Points to keep; must not exceed the number available.
        generator: Optional generator.
    """

    def __init__(self, n: int, generator: torch.Generator | None = None):
        if n < 1:
            raise ValueError(f"Expected 'n' to be >= 1 (got {n})")
        self.n, self.generator = n, generator

    def __call__(self, pts: torch.Tensor) -> torch.Tensor:  # noqa: D102
        if pts.shape[-2] < self.n:
            raise ValueError(f"Expected 'number of points' to be >= {self.n} (got {pts.shape[-2]})")
        idx = torch.randperm(pts.shape[-2], generator=self.generator)[: self.n]
        return pts[..., idx, :]


def random_point_drop(
    pts: torch.Tensor, p_max: float = 0.85, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Drop a random fraction ``p ~ U[0, p_max]`` of a shape's points, keeping the shape ``(n, 3)``.

    Each point is dropped independently with probability ``p`` (at least one point is kept). As in
    the PointNet++/DGCNN ``random_point_dropout`` augmentation, dropped rows are overwritten by
    duplicates of kept points, so batches stay rectangular; here each dropped row copies a uniformly
    chosen kept point (the reference copies the first point). The set of distinct points is therefore
    exactly the kept subset.

    Args:
        pts: ``(n, 3)`` points of one shape.
        p_max: Upper bound on the drop fraction, in ``[0, 1)`` (ACE Fig. 7 uses 0.85).
        generator: Optional generator.

    Returns:
        ``(points (n, 3), keep_mask (n,) bool)``.
    """
    if not 0.0 <= p_max < 1.0:
        raise ValueError(f"Expected 'p_max' to be in [0, 1) (got {p_max})")
    n = pts.shape[-2]
    p = float(torch.rand((), generator=generator)) * p_max
    keep = torch.rand(n, generator=generator) >= p
    if not bool(keep.any()):
        keep[int(torch.randint(n, (1,), generator=generator))] = True
    kept = keep.nonzero().squeeze(1)
    fill = kept[torch.randint(len(kept), (n,), generator=generator)]
    src = torch.where(keep, torch.arange(n), fill)
    return pts[..., src, :], keep


class RandomPointDrop:
    """Transform wrapper of :func:`random_point_drop` (ACE Fig. 7 right: degraded inputs)."""

    def __init__(self, p_max: float = 0.85, generator: torch.Generator | None = None):
        if not 0.0 <= p_max < 1.0:
            raise ValueError(f"Expected 'p_max' to be in [0, 1) (got {p_max})")
        self.p_max, self.generator = p_max, generator

    def __call__(self, pts: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return random_point_drop(pts, self.p_max, self.generator)[0]


# ------------------------------------------------------------------------------------------- synthetic
SYNTHETIC_CLASSES = ("sphere", "cube", "cylinder", "cone")


def _primitive(kind: str, n: int, gen: torch.Generator) -> torch.Tensor:
    u = torch.rand(n, 2, generator=gen)
    if kind == "sphere":
        x = torch.randn(n, 3, generator=gen)
        return x / x.norm(dim=1, keepdim=True)
    if kind == "cube":
        x = torch.rand(n, 3, generator=gen) * 2 - 1
        axis = torch.randint(3, (n,), generator=gen)
        x[torch.arange(n), axis] = torch.sign(torch.rand(n, generator=gen) - 0.5)
        return x
    theta = 2 * torch.pi * u[:, 0]
    h = u[:, 1] * 2 - 1
    r = torch.ones(n) if kind == "cylinder" else (1 - h) / 2
    return torch.stack([r * torch.cos(theta), r * torch.sin(theta), h], dim=1)


class SyntheticShapes(Dataset):
    """SYNTHETIC stand-in for ModelNet40: noisy surface samples of primitives (4 classes by default).

    Each shape gets a random anisotropic scale in [0.8, 1.2] per axis and Gaussian noise; shapes are
    canonically oriented (apply :class:`RandomRotation` to test invariance).

    Args:
        num_per_class: Shapes per class.
        num_points: Points per shape.
        classes: Subset of :data:`SYNTHETIC_CLASSES`.
        noise: Standard deviation of the additive noise.
        seed: Generator seed.
        transform: Applied on access.
    """

    def __init__(
        self,
        num_per_class: int = 8,
        num_points: int = 256,
        classes: Sequence[str] = SYNTHETIC_CLASSES,
        noise: float = 0.01,
        seed: int = 0,
        transform: Transform | None = None,
    ) -> None:
        bad = [c for c in classes if c not in SYNTHETIC_CLASSES]
        if bad:
            raise ValueError(f"Expected 'classes' to be among {SYNTHETIC_CLASSES} (got {bad})")
        gen = torch.Generator().manual_seed(seed)
        self.classes = list(classes)
        pts, labels = [], []
        for c, kind in enumerate(self.classes):
            for _ in range(num_per_class):
                x = _primitive(kind, num_points, gen) * (0.8 + 0.4 * torch.rand(3, generator=gen))
                pts.append(x + noise * torch.randn(num_points, 3, generator=gen))
                labels.append(c)
        self.points = torch.stack(pts).float()
        self.labels = torch.tensor(labels, dtype=torch.long)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        pts = self.points[i]
        return (self.transform(pts) if self.transform else pts), int(self.labels[i])
