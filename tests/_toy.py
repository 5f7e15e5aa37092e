"""The tiny toy-rotation problem files the CLI, run-folder and report tests share.

``TOY_DATA`` is the task and model (32/16/16 samples, a two-layer vector net); the constants below add a
strategy and a training block. Tests change one line of them with ``str.replace``.
"""

import torch
from torch import nn

import constrained_eq as ceq

TOY_DATA = """\
task:
  name: toy_rotation
  options: {n_train: 32, n_val: 16, n_test: 16}
model:
  name: vector_net
  options: {hidden: 4, n_layers: 2}
"""

# γ = 0 by plain descent–ascent (formulation named directly), two epochs of two batches.
TOY_LAGRANGIAN = TOY_DATA + """\
constraints:
  - Equality(target=gammas)
formulation: lagrangian
training:
  epochs: 2
  batch_size: 16
"""

# The same problem through a strategy, with Adam at lr 0.01.
TOY_ACE_EQUALITY = TOY_DATA + """\
strategy: ace_equality
optimizer: {name: adam, lr: 0.01}
training: {epochs: 2, batch_size: 16}
"""


# One epoch, no equivariance error, a little broken symmetry: the quickest run, for sweeps and CLI messages.
TOY_QUICK = """\
task:
  name: toy_rotation
  options: {n_train: 32, n_val: 16, n_test: 16, breaking: 0.2}
model:
  name: vector_net
  options: {hidden: 4, n_layers: 2}
strategy: ace_equality
optimizer: {lr: 1e-2}
training: {epochs: 1, batch_size: 16}
evaluation: {equivariance_error: false}
"""

class RelaxedMLP(nn.Module):
    """4 → width → … → 2: ``depth`` homotopic tanh layers, each with a linear branch (γ⁰ = 1)."""

    def __init__(self, width: int = 8, depth: int = 3) -> None:
        super().__init__()
        self.embed = nn.Linear(4, width)
        self.blocks = nn.ModuleList(
            ceq.HomotopicLayer(nn.Sequential(nn.Linear(width, width), nn.Tanh()), ceq.LinearBranch(width, width))
            for _ in range(depth)
        )
        self.head = nn.Linear(width, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.embed(x)
        for block in self.blocks:
            h = block(h)
        return self.head(h)
