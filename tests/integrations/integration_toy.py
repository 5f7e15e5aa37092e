"""The small problem the integration tests train: a relaxed MLP on indexed float64 data, γ = 0 and a batch target.

Batches are ``(x, y, index)``: the index lets a test name the samples each step saw. The problem has two
constraints, ACE's ``Equality(gammas)`` and an inequality on the mean output (a target that reads the batch,
so its violation is averaged over ranks), so every formulation has multipliers, slacks or penalties to carry.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import TensorDataset

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/_toy.py, also when run by torchrun

from _toy import RelaxedMLP  # noqa: E402

import constrained_eq as ceq  # noqa: E402

FORMULATIONS = {"lagrangian": {}, "augmented_lagrangian": {}, "resilient": {"rho": 0.5}, "penalty": {},
                "schedule": {"epochs": 3}, "none": {}}
SOLVER = {"dual_lr": 5e-2, "variable_lr": 5e-2}


def dataset(n: int = 64) -> TensorDataset:
    generator = torch.Generator().manual_seed(3)
    x = torch.randn(n, 4, generator=generator, dtype=torch.float64)
    y = torch.randn(n, 2, generator=generator, dtype=torch.float64) + 0.3
    return TensorDataset(x, y, torch.arange(n))


def problem() -> ceq.ConstrainedProblem:
    mean_output = ceq.Target(lambda model, batch, output: output.mean(0), "mean_output")
    return ceq.ConstrainedProblem(lambda out, batch: F.mse_loss(out, batch[1]),
                                  [ceq.Equality(ceq.gammas), ceq.Inequality(mean_output, bound=0.1)])


def model(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return RelaxedMLP().double()


def adam(params):
    return torch.optim.Adam(params, lr=1e-2)


def example_batch():
    return dataset()[:2]


def state(model: torch.nn.Module, solver: ceq.Solver) -> dict[str, torch.Tensor]:
    """θ (with γ), λ and u of a run, flattened (float64)."""
    def flat(tensors):
        tensors = [t.detach().reshape(-1).double() for t in tensors]
        return torch.cat(tensors) if tensors else torch.zeros(0, dtype=torch.float64)

    return {"theta": flat(list(model.parameters())), "gamma": ceq.gammas(model).detach().clone(),
            "lambda": flat(list(solver.multipliers().values())), "u": flat(list(solver.slacks.values()))}
