"""``mocap``: CMU motion-capture forecasting (SPEC §4.4, ACE Table K) with EGNO.

Adapter over :mod:`constrained_eq.data.mocap` (``MocapEGNO``, ``synthetic_mocap``) and
:class:`constrained_eq.models.egno.EGNO`. Batches are PyG ``Batch`` objects of
``Data(pos=x_t, vel=x_{t+1} − x_t, y=x_{t+Δ})``. EGNO predicts ``T`` future states; the loss and the
metric are the MSE of the last one against ``x_{t+Δ}`` (the benchmark's number).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch_geometric.loader import DataLoader

from constrained_eq.data._common import random_split_indices
from constrained_eq.data.mocap import MocapEGNO, synthetic_mocap
from constrained_eq.models.egno import EGNO, mocap_egno_inputs
from constrained_eq.symmetry.haar import random_rotation
from constrained_eq.tasks.base import Loaders, Task

__all__ = ["Mocap"]

_EGNO_OPTIONS = {"hidden_nf": 64, "n_layers": 4, "num_timesteps": 8, "num_modes": 2, "relaxed": True,
                 "neq_hidden": None, "gamma_init": 1.0, "neq_init_std": None}


class Mocap(Task):
    """The ``mocap`` task.

    Options:
        source (str): ``"cmu"`` (ASF/AMC files under ``root``) or ``"synthetic"`` (default: ``"cmu"``).
        root (str): Folder holding ``09/`` and/or ``35/`` (CMU ``all_asfamc/subjects`` layout); required for ``cmu``.
        subject (int): 9 (Run) or 35 (Walk) (default: 35).
        delta_frame (int): Forecast horizon Δ in frames (default: 30).
        num_trials (int): Synthetic walker trajectories, split 60/20/20 by sample (default: 3).
    """

    name = "mocap"
    option_defaults = {"source": "cmu", "root": None, "subject": 35, "delta_frame": 30, "num_trials": 3}
    option_choices = {"source": ("cmu", "synthetic"), "subject": (9, 35)}
    model_options = {"egno": _EGNO_OPTIONS}
    metric_name = "mse"
    supports_augmentation = True

    def _splits(self) -> dict[str, Any]:
        o = self.options
        if o["source"] == "synthetic":
            data = synthetic_mocap(num_trials=o["num_trials"], delta_frame=o["delta_frame"])
            split = random_split_indices(len(data), (0.6, 0.2, 0.2), 0)
            return {k: [data[int(i)] for i in idx] for k, idx in split.items()}
        if not o["root"]:
            raise ValueError("Expected 'root' to be the folder holding the CMU subject folders (e.g. 35/35.asf) "
                             "for source 'cmu' (got None); set task.options.root")
        try:
            return {k: MocapEGNO(o["root"], o["subject"], k, o["delta_frame"]) for k in ("train", "val", "test")}
        except FileNotFoundError as err:
            raise ValueError(f"Task 'mocap' (source 'cmu') cannot find its data: {err}") from None

    def loaders(self, seed: int, batch_size: int) -> Loaders:
        """Train (seeded shuffle), validation and test PyG loaders."""
        parts = self._splits()
        gen = torch.Generator().manual_seed(seed)
        return Loaders(DataLoader(parts["train"], batch_size=batch_size, shuffle=True, generator=gen),
                       DataLoader(parts["val"], batch_size=batch_size),
                       DataLoader(parts["test"], batch_size=batch_size))

    def loss(self, output: torch.Tensor, batch: Any) -> torch.Tensor:
        """MSE of the last predicted positions against ``x_{t+Δ}``."""
        return F.mse_loss(output[-1], batch.y)

    def model(self, name: str, **options: Any) -> nn.Module:
        """Build the named model with its options."""
        if name != "egno":
            raise ValueError(f"Expected 'model.name' to be 'egno' (got {name!r})")
        return EGNO(**options)

    def forward(self, model: nn.Module, batch: Any) -> torch.Tensor:
        """Run EGNO on a PyG batch."""
        return model(*mocap_egno_inputs(batch))

    def augment(self, batch: Any) -> Any:
        """Rotate positions, velocities and targets by one random rotation."""
        rotation = random_rotation(dtype=batch.pos.dtype, device=batch.pos.device)
        batch = batch.clone()
        batch.pos, batch.vel, batch.y = batch.pos @ rotation.T, batch.vel @ rotation.T, batch.y @ rotation.T
        return batch

    def equivariance_error(self, model: nn.Module, loader: Any) -> float:
        """``E‖f(Rx) − R f(x)‖ / E‖f(x) − x‖`` on the last predicted step, one fixed R per batch (seed 0)."""

        def turn(batch: Any, rot: torch.Tensor) -> Any:
            turned = batch.clone()
            turned.pos, turned.vel = batch.pos @ rot.T, batch.vel @ rot.T
            return turned

        return self.rotation_error(
            model, loader, turn,
            lambda out, turned, rot, batch: ((turned[-1] - out[-1] @ rot.T).norm(dim=-1).sum(),
                                             (out[-1] - batch.pos).norm(dim=-1).sum()))
