"""``modelnet``: ModelNet40 point-cloud classification (SPEC §4.3) with VN-PointNet or VN-DGCNN.

Adapter over :mod:`constrained_eq.data.modelnet` and :mod:`constrained_eq.models` (``VNPointNet``,
``VNDGCNN``). Batches are ``(points (B, n, 3), labels (B,))``. The loss is cross-entropy; the metric
``accuracy`` is the instance (overall) accuracy in [0, 1], higher is better (error = 1 − accuracy).

Every cloud is reduced to ``n_points`` points (CR uses 300) and normalised to the unit sphere. With
``point_drop = p`` a fraction ``U[0, p]`` of each cloud's points is dropped (ACE Fig. 7 right uses
0.85), in training and at test time (degraded inputs). ``rotate`` applies Haar-random SO(3)
rotations: ``"none"``, ``"test"`` (I/SO(3): canonical training, rotated test) or ``"both"``
(SO(3)/SO(3)). Validation is a seeded 10 % of the training split; validation and test clouds are
transformed once with a fixed seed, so their numbers are comparable across epochs and runs.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset, TensorDataset

from constrained_eq.data._common import random_split_indices
from constrained_eq.data.modelnet import (
    ModelNet40H5,
    ModelNetOFF,
    NormalizeUnitSphere,
    RandomPointDrop,
    RandomRotation,
    SubsamplePoints,
    SyntheticShapes,
)
from constrained_eq.models.vn_dgcnn import VNDGCNN
from constrained_eq.models.vn_pointnet import VNPointNet
from constrained_eq.symmetry.haar import random_rotation
from constrained_eq.tasks.base import Loaders, Task, invariance_sums

__all__ = ["ModelNet"]

_POINTNET_OPTIONS = {"channels": [8, 16, 32], "k": 8, "hidden": 64, "relaxed": True, "gamma_init": 1.0,
                     "neq_init_std": None}
_DGCNN_OPTIONS = {"channels": [8, 8, 16], "emb_channels": 32, "k": 8, "hidden": 64, "relaxed": True,
                  "gamma_init": 1.0, "neq_init_std": None}


class _Transformed(Dataset):
    """``(points, label)`` of ``base[indices[i]]`` with ``transform`` applied to the points."""

    def __init__(self, base: Dataset, indices: list[int], transform: Any) -> None:
        self.base, self.indices, self.transform = base, indices, transform

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        pts, label = self.base[self.indices[i]]
        return self.transform(pts.float()), int(label)


class ModelNet(Task):
    """The ``modelnet`` task.

    Options:
        source (str): ``"h5"`` (``modelnet40_ply_hdf5_2048``), ``"off"`` (raw OFF meshes) or
            ``"synthetic"`` (4 primitive classes) (default: ``"h5"``).
        root (str): Dataset folder for ``h5``/``off`` (required for them).
        n_points (int): Points per cloud (default: 300, as CR).
        point_drop (float): Maximum drop fraction in [0, 0.85] (default: 0.0).
        rotate (str): ``"none"``, ``"test"`` or ``"both"`` (default: ``"none"``).
        num_per_class (int): Shapes per class of ``synthetic`` training data (default: 16).
        data_seed (int): Seed of the validation split and of the fixed val/test transforms (default: 0).
    """

    name = "modelnet"
    option_defaults = {"source": "h5", "root": None, "n_points": 300, "point_drop": 0.0, "rotate": "none",
                       "num_per_class": 16, "data_seed": 0}
    option_choices = {"source": ("h5", "off", "synthetic"), "rotate": ("none", "test", "both")}
    model_options = {"vn_pointnet": _POINTNET_OPTIONS, "vn_dgcnn": _DGCNN_OPTIONS}
    metric_name = "accuracy"
    higher_is_better = ("accuracy", "class_accuracy")
    supports_augmentation = True

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        o = self.options
        drop = o["point_drop"]
        if isinstance(drop, bool) or not isinstance(drop, (int, float)) or not 0.0 <= drop <= 0.85:
            raise ValueError(f"Expected 'point_drop' to be a number in [0, 0.85] (got {drop!r})")
        if isinstance(o["n_points"], bool) or not isinstance(o["n_points"], int) or o["n_points"] < 1:
            raise ValueError(f"Expected 'n_points' to be a positive int (got {o['n_points']!r})")
        self.num_classes = 4 if o["source"] == "synthetic" else 40

    def _splits(self) -> tuple[Dataset, Dataset]:
        o = self.options
        if o["source"] == "synthetic":
            n = o["n_points"]
            return (SyntheticShapes(o["num_per_class"], n, seed=o["data_seed"]),
                    SyntheticShapes(max(1, o["num_per_class"] // 2), n, seed=o["data_seed"] + 1))
        if not o["root"]:
            raise ValueError(f"Expected 'root' to be the ModelNet40 folder for source {o['source']!r} (got None); "
                             "set task.options.root")
        try:
            if o["source"] == "h5":
                return ModelNet40H5(o["root"], "train"), ModelNet40H5(o["root"], "test")
            return (ModelNetOFF(o["root"], "train", num_points=o["n_points"]),
                    ModelNetOFF(o["root"], "test", num_points=o["n_points"]))
        except FileNotFoundError as err:
            raise ValueError(f"Task 'modelnet' (source {o['source']!r}) cannot find its data: {err}") from None

    def _transform(self, generator: torch.Generator | None, rotate: bool) -> Any:
        o = self.options
        steps = [SubsamplePoints(o["n_points"], generator), NormalizeUnitSphere()]
        if o["point_drop"] > 0:
            steps.append(RandomPointDrop(float(o["point_drop"]), generator))
        if rotate:
            steps.append(RandomRotation(generator))

        def apply(pts: torch.Tensor) -> torch.Tensor:
            for step in steps:
                pts = step(pts)
            return pts

        return apply

    def _fixed(self, base: Dataset, indices: list[int], rotate: bool, seed: int) -> TensorDataset:
        """Transform ``base[indices]`` once with a seeded generator."""
        data = _Transformed(base, indices, self._transform(torch.Generator().manual_seed(seed), rotate))
        items = [data[i] for i in range(len(data))]
        return TensorDataset(torch.stack([p for p, _ in items]), torch.tensor([c for _, c in items]))

    def loaders(self, seed: int, batch_size: int) -> Loaders:
        """Train (seeded shuffle, fresh random transforms each epoch), fixed validation and test loaders."""
        o = self.options
        train, test = self._splits()
        self.num_classes = len(getattr(train, "classes", [])) or self.num_classes
        split = random_split_indices(len(train), (0.9, 0.0, 0.1), o["data_seed"])
        train_idx, val_idx = split["train"].tolist(), split["test"].tolist()
        train_set = _Transformed(train, train_idx, self._transform(None, o["rotate"] == "both"))
        val_set = self._fixed(train, val_idx, o["rotate"] == "both", o["data_seed"])
        test_set = self._fixed(test, list(range(len(test))), o["rotate"] != "none", o["data_seed"] + 1)
        gen = torch.Generator().manual_seed(seed)
        return Loaders(DataLoader(train_set, batch_size=batch_size, shuffle=True, generator=gen),
                       DataLoader(val_set, batch_size=batch_size), DataLoader(test_set, batch_size=batch_size))

    def loss(self, output: torch.Tensor, batch: Any) -> torch.Tensor:
        """Cross-entropy of the logits."""
        return F.cross_entropy(output, batch[1])

    def metric(self, output: torch.Tensor, batch: Any) -> torch.Tensor:
        """Instance accuracy in [0, 1]."""
        return (output.argmax(dim=-1) == batch[1]).float().mean()

    def batch_summary(self, output: torch.Tensor, batch: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """Predicted and true classes of the batch (left on the device until :meth:`aggregate`)."""
        return output.argmax(dim=-1), batch[1]

    def aggregate(self, summaries: list[Any]) -> dict[str, float]:
        r"""``class_accuracy``: the mean over classes of the per-class accuracy (ModelNet40's "mAcc").

        .. math:: \text{mAcc} = \frac{1}{|C|} \sum_{c \in C} \frac{\#\{i : \hat y_i = y_i = c\}}{\#\{i : y_i = c\}}

        over the classes C present in the loader.
        """
        if not summaries:
            return {}
        predicted = torch.cat([p for p, _ in summaries]).cpu()
        labels = torch.cat([y for _, y in summaries]).cpu()
        classes = labels.unique()
        per_class = torch.stack([(predicted[labels == c] == c).float().mean() for c in classes])
        return {"class_accuracy": float(per_class.mean())}

    def model(self, name: str, **options: Any) -> nn.Module:
        """Build the named model with its options (``num_classes`` from the data)."""
        if "channels" in options:
            options["channels"] = tuple(options["channels"])
        if name == "vn_pointnet":
            return VNPointNet(self.num_classes, **options)
        if name == "vn_dgcnn":
            return VNDGCNN(self.num_classes, **options)
        raise ValueError(f"Expected 'model.name' to be one of 'vn_pointnet', 'vn_dgcnn' (got {name!r})")

    def augment(self, batch: Any) -> Any:
        """Rotate every cloud of the batch by one random rotation (labels are invariant)."""
        points, labels = batch
        return points @ random_rotation(dtype=points.dtype, device=points.device).T, labels

    def equivariance_error(self, model: nn.Module, loader: Any) -> float:
        """``E|f(Rx) − f(x)| / E|f(x)|`` on the logits, one fixed R per batch (seed 0)."""
        return self.rotation_error(model, loader, lambda batch, rot: (batch[0] @ rot.T, *batch[1:]),
                                   invariance_sums)
