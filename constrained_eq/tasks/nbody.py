"""``nbody``: the charged-particle N-body benchmark (SPEC §4.1) with the EGNN or SEGNN models.

Adapter over :mod:`constrained_eq.data.nbody` (``NBodyDataset``) and :mod:`constrained_eq.models`
(``EGNN`` with :func:`nbody_egnn_inputs`, ``SEGNN`` with :func:`nbody_segnn_inputs`). Importing this
module fails with ``ImportError`` when those are missing; the task registry turns that into a
message, so the rest of the package works without it.

The loss and metric are the benchmark's MSE of predicted vs. true positions at frame 40. SEGNN
predicts a displacement, so its prediction is ``loc + output``.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from constrained_eq._utils.distributed import unwrap
from constrained_eq.data.nbody import NBodyBatch, NBodyDataset, join_batches
from constrained_eq.models.egnn import EGNN, nbody_egnn_inputs
from constrained_eq.symmetry.haar import random_rotation
from constrained_eq.tasks.base import Loaders, Task

__all__ = ["NBody"]

_EGNN_OPTIONS = {"hidden_nf": 64, "n_layers": 4, "relaxed": True, "neq_hidden": None, "gamma_init": 1.0,
                 "neq_init_std": None}
_SEGNN_OPTIONS = {"hidden_nf": 64, "n_layers": 4, "lmax_h": 1, "lmax_attr": 1, "relaxed": True, "gamma_init": 1.0,
                  "neq_init_std": None, "placement": "cr", "weight_init": "normal", "weight_scaling": False,
                  "bias_init": "zero", "edge_vector": "x_i-x_j", "distance": "squared", "attr_scalar": None}


class NBody(Task):
    """The ``nbody`` task.

    Options:
        n_train, n_val, n_test (int): Split sizes (default: 1000, 500, 500).
        data_seed (int): Simulator seed (default: 43, as nbody_small).
        clip (str): Force clipping, ``"axis"`` (benchmark), ``"norm"`` or ``"none"`` (default: ``"axis"``).
        field (list of 3 floats): Constant external field, breaks rotation symmetry (default: none).
        root (str): Cache folder of the simulated data (default: ``$CEQ_CACHE`` or ``~/.cache/constrained_eq``).
    """

    name = "nbody"
    option_defaults = {"n_train": 1000, "n_val": 500, "n_test": 500, "data_seed": 43, "clip": "axis",
                       "field": None, "root": None}
    model_options = {"egnn": _EGNN_OPTIONS, "segnn": _SEGNN_OPTIONS}
    metric_name = "mse"
    supports_augmentation = True

    def _split(self, split: str) -> NBodyDataset:
        o = self.options
        return NBodyDataset(split, o["root"], o["n_train"], o["n_val"], o["n_test"], seed=o["data_seed"],
                            clip=o["clip"], field=o["field"])

    def loaders(self, seed: int, batch_size: int) -> Loaders:
        """Build the train (seeded shuffle), validation and test loaders."""
        return Loaders(self._split("train").loader(batch_size, shuffle=True, seed=seed),
                       self._split("val").loader(batch_size), self._split("test").loader(batch_size))

    def loss(self, output: torch.Tensor, batch: NBodyBatch) -> torch.Tensor:
        """Mean squared error of the predicted positions."""
        return F.mse_loss(output, batch.target)

    def model(self, name: str, **options: Any) -> nn.Module:
        """Build the named model with its options."""
        if name == "egnn":
            model = EGNN(1, **options)
            model.inputs = "egnn"
            return model
        if name == "segnn":
            from constrained_eq.models.segnn import SEGNN

            model = SEGNN(**options)
            model.inputs = "segnn"
            return model
        raise ValueError(f"Expected 'model.name' to be one of 'egnn', 'segnn' (got {name!r})")

    def forward(self, model: nn.Module, batch: NBodyBatch) -> torch.Tensor:
        """Run the model on a batch."""
        bare = unwrap(model)  # the bare module under DDP
        if getattr(bare, "inputs", "egnn") == "segnn":
            from constrained_eq.models.segnn import nbody_segnn_inputs

            encoding = getattr(bare, "input_options", {})
            return batch.loc + model(*nbody_segnn_inputs(batch.loc, batch.vel, batch.charges, batch.edge_index,
                                                         batch.batch, **encoding))
        return model(*nbody_egnn_inputs(batch.loc, batch.vel, batch.charges, batch.edge_index, batch.batch))

    def augment(self, batch: NBodyBatch) -> NBodyBatch:
        """Rotate inputs and targets by one random rotation."""
        rotation = random_rotation(dtype=batch.loc.dtype, device=batch.loc.device)
        return batch._replace(loc=batch.loc @ rotation.T, vel=batch.vel @ rotation.T,
                              target=batch.target @ rotation.T)

    def equivariance_error(self, model: nn.Module, loader: Any) -> float:
        """``E‖f(Rx, Rv) − R f(x, v)‖ / E‖f(x, v) − x‖`` over the loader, one fixed R per batch (seed 0)."""
        return self.rotation_error(
            model, loader, lambda batch, rot: batch._replace(loc=batch.loc @ rot.T, vel=batch.vel @ rot.T),
            lambda out, turned, rot, batch: ((turned - out @ rot.T).norm(dim=-1).sum(),
                                             (out - batch.loc).norm(dim=-1).sum()),
            join=lambda batch, turned: (join_batches(batch, turned), lambda out: out.split(len(batch.loc))))
