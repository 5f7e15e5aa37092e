"""``qm9``: QM9 property regression (SPEC §4.2, ACE Table 2 right) with SchNet.

Adapter over :mod:`constrained_eq.data.qm9` and :class:`constrained_eq.models.schnet.SchNet`. Batches are
PyG ``Batch`` objects; the model reads ``z``, ``pos`` and ``batch``.

The target is standardised with the training split's mean and standard deviation; the loss is the
L1 error in standardised units and the metric ``mae`` is the mean absolute error in the target's
own units (PyG's: eV for energies and orbital energies, D for μ, a0³ for α, a0² for ⟨R²⟩,
cal/(mol K) for c_v). The default target is ``homo`` (ε_HOMO, eV): an intensive quantity whose
error is directly comparable across subset sizes and needs no per-atom reference energies, which
makes it the cheapest meaningful target of Table Q on a CPU.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch_geometric.loader import DataLoader

from constrained_eq.data._common import cache_root
from constrained_eq.data.qm9 import QM9_TARGETS, QM9Pack, qm9_from_pyg_root, qm9_split, synthetic_qm9
from constrained_eq.models.schnet import SchNet
from constrained_eq.symmetry.haar import random_rotation
from constrained_eq.tasks.base import Loaders, Task, invariance_sums

__all__ = ["QM9", "target_index"]

_SCHNET_OPTIONS = {"hidden_channels": 64, "num_filters": 64, "num_interactions": 3, "num_gaussians": 50,
                   "cutoff": 5.0, "max_num_neighbors": 32, "readout": "mean", "relaxed": True, "neq_hidden": 32,
                   "gamma_init": 1.0, "neq_init_std": None}


def target_index(target: str | int) -> int:
    """Column of ``target`` (a name of ``QM9_TARGETS`` or an index 0..18) in PyG's ``y``."""
    if isinstance(target, bool) or not isinstance(target, (str, int)):
        raise ValueError(f"Expected 'target' to be one of {QM9_TARGETS} or an index 0..18 (got {target!r})")
    if isinstance(target, int):
        if not 0 <= target < len(QM9_TARGETS):
            raise ValueError(f"Expected 'target' to be an index 0..{len(QM9_TARGETS) - 1} (got {target})")
        return target
    lowered = {t.lower(): i for i, t in enumerate(QM9_TARGETS)}
    if target.lower() not in lowered:
        raise ValueError(f"Expected 'target' to be one of {QM9_TARGETS} or an index 0..18 (got {target!r})")
    return lowered[target.lower()]


class QM9(Task):
    """The ``qm9`` task.

    Options:
        source (str): ``"qm9pack"`` (the installed PyPI package, offline, 130,831 molecules),
            ``"pyg_root"`` (a local PyG QM9 root, never downloaded) or ``"synthetic"`` (default: ``"qm9pack"``).
        root (str): Cache folder for ``qm9pack`` (default: ``$CEQ_CACHE/qm9pack``); dataset root for
            ``pyg_root`` (required).
        limit (int): Use only the first ``limit`` molecules (file order), then split 80/10/10 (default: all;
            for ``synthetic`` the number of generated molecules, default 64).
        target (str | int): Target name of ``QM9_TARGETS`` or its index (default: ``"homo"``).
        split_seed (int): Seed of the 80/10/10 permutation (default: 0).
    """

    name = "qm9"
    option_defaults = {"source": "qm9pack", "root": None, "limit": None, "target": "homo", "split_seed": 0}
    option_choices = {"source": ("qm9pack", "pyg_root", "synthetic")}
    model_options = {"schnet": _SCHNET_OPTIONS}
    metric_name = "mae"
    supports_augmentation = True

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.column = target_index(self.options["target"])
        self.mean, self.std = 0.0, 1.0

    def dataset(self) -> Any:
        """The whole (possibly limited) dataset.

        Raises:
            ValueError: If the data files are missing; the message names the files and the folder.
        """
        o = self.options
        limit = o["limit"]
        try:
            if o["source"] == "synthetic":
                return synthetic_qm9(64 if limit is None else int(limit), seed=o["split_seed"])
            if o["source"] == "qm9pack":
                return QM9Pack(o["root"] or cache_root() / "qm9pack", limit=limit)
            if not o["root"]:
                raise ValueError("Expected 'root' to be a PyG QM9 folder holding raw/ for source 'pyg_root' "
                                 "(got None); set task.options.root")
            data = qm9_from_pyg_root(o["root"])
            return data if limit is None else data[: int(limit)]
        except FileNotFoundError as err:
            raise ValueError(f"Task 'qm9' (source {o['source']!r}) cannot find its data: {err}") from None

    def loaders(self, seed: int, batch_size: int) -> Loaders:
        """80/10/10 split (``qm9_split``), target statistics from the training split, PyG loaders."""
        data = self.dataset()
        split = qm9_split(len(data), seed=self.options["split_seed"])
        parts = {k: [data[int(i)] for i in idx] for k, idx in split.items()}
        y = torch.cat([d.y[:, self.column] for d in parts["train"]]).double()
        self.mean = float(y.mean())
        self.std = float(y.std()) if y.numel() > 1 and float(y.std()) > 0 else 1.0
        gen = torch.Generator().manual_seed(seed)
        return Loaders(DataLoader(parts["train"], batch_size=batch_size, shuffle=True, generator=gen),
                       DataLoader(parts["val"], batch_size=batch_size),
                       DataLoader(parts["test"], batch_size=batch_size))

    def _target(self, batch: Any) -> torch.Tensor:
        return batch.y[:, self.column]

    def loss(self, output: torch.Tensor, batch: Any) -> torch.Tensor:
        """L1 error in standardised units."""
        return (output.view(-1) - (self._target(batch) - self.mean) / self.std).abs().mean()

    def metric(self, output: torch.Tensor, batch: Any) -> torch.Tensor:
        """Mean absolute error in the target's units."""
        return (output.view(-1) * self.std + self.mean - self._target(batch)).abs().mean()

    def model(self, name: str, **options: Any) -> nn.Module:
        """Build the named model with its options."""
        if name != "schnet":
            raise ValueError(f"Expected 'model.name' to be 'schnet' (got {name!r})")
        return SchNet(**options)

    def forward(self, model: nn.Module, batch: Any) -> torch.Tensor:
        """Run the model on a PyG batch."""
        return model(batch.z, batch.pos, batch.batch)

    def augment(self, batch: Any) -> Any:
        """Rotate the positions of every molecule by one random rotation (targets are invariant)."""
        batch = batch.clone()
        batch.pos = batch.pos @ random_rotation(dtype=batch.pos.dtype, device=batch.pos.device).T
        return batch

    def equivariance_error(self, model: nn.Module, loader: Any) -> float:
        """``E|f(Rx) − f(x)| / E|f(x)|`` (invariance) over the loader, one fixed R per batch (seed 0)."""
        def turn(batch: Any, rot: torch.Tensor) -> Any:
            turned = batch.clone()
            turned.pos = batch.pos @ rot.T
            return turned

        return self.rotation_error(model, loader, turn, invariance_sums)
