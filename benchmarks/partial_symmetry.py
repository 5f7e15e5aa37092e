r"""Partial symmetry on the broken-chain family: vanilla vs equality-ACE (Alg. 1) vs resilient (Alg. 2).

For each seed and each data setting (``eps = 0`` symmetric, ``eps > 0`` broken at layer ``depth``) it
trains a :class:`~constrained_eq.nn.vn_chain.VNChain` three ways and records per-step γ, λ, u and
per-epoch validation MSE, equivariance error and the Thm 4.2 bound (C = max(B, M)) from the current γ.

Run (about two minutes on 2 CPU cores)::

    PYTHONPATH=. python benchmarks/partial_symmetry.py --seeds 0 1 2 --out docs/results/partial_symmetry
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

import constrained_eq as ceq
from constrained_eq.data.broken_chain import make_broken_chain
from constrained_eq.nn.vn_chain import VNChain
from constrained_eq.symmetry import SO, VectorRep, equivariance_error, equivariance_error_bound

METHODS = ("vanilla", "equality", "resilient")
KEYS = {"equality": "equality_gammas", "resilient": "equality_gammas"}


@dataclass
class ChainConfig:
    """Sizes and step sizes of one run (defaults: the benchmark's)."""

    channels: int = 4
    layers: int = 3
    depth: int = 1
    eps: float = 0.5
    breaking: str = "anisotropic"
    n_train: int = 512
    n_val: int = 256
    epochs: int = 60
    batch_size: int = 64
    lr: float = 3e-3          # Adam on θ
    eta_p: float = 0.05       # plain SGD on γ and u
    eta_d: float = 0.02       # dual ascent on λ
    rho: float = 1.0


@dataclass
class ChainRun:
    """Histories of one run: per step (T, L) arrays and per-epoch metrics."""

    method: str
    gamma: np.ndarray
    lam: np.ndarray
    slack: np.ndarray
    val_mse: list[float] = field(default_factory=list)
    val_mse_projected: list[float] = field(default_factory=list)
    equivariance_error: list[float] = field(default_factory=list)
    bound: list[float] = field(default_factory=list)
    contributions: np.ndarray | None = None
    model: VNChain | None = None


def _loss(output: torch.Tensor, batch) -> torch.Tensor:
    """J_0 = E_batch ‖f(x) − y‖² (squared error summed over the C×3 coordinates)."""
    return (output - batch[1]).pow(2).sum((1, 2)).mean()


def _evaluate(model: VNChain, data, gen_seed: int) -> tuple[float, float, float, float]:
    x, y = data.x_val, data.y_val
    with torch.no_grad():
        mse = _loss(model(x), (x, y)).item()
        mse_p = _loss(ceq.project(model)(x), (x, y)).item()
        err = equivariance_error(model, x, SO(3), act_in=VectorRep(model.channels),
                                 generator=torch.Generator().manual_seed(gen_seed)).item()
        M = float(model.lipschitz_constants().max())
        bound = equivariance_error_bound(model.gammas(), B=max(model.branch_scale, 1.0), M=M,
                                         x_norm=x.flatten(1).norm(dim=1).mean()).item()
    return mse, mse_p, err, bound


def fit_chain(method: str, cfg: ChainConfig, seed: int) -> ChainRun:
    """Train one VNChain on ``make_broken_chain(seed=seed)`` with ``method`` in ``METHODS``."""
    if method not in METHODS:
        raise ValueError(f"Expected 'method' to be one of {', '.join(map(repr, METHODS))} (got {method!r})")
    data = make_broken_chain(cfg.n_train, cfg.n_val, channels=cfg.channels, layers=cfg.layers, depth=cfg.depth,
                             eps=cfg.eps, breaking=cfg.breaking, seed=seed)
    torch.manual_seed(seed)
    model = VNChain(cfg.channels, cfg.layers, bias=cfg.breaking == "field",
                    gamma_init=0.0 if method == "vanilla" else 1.0)
    if method == "vanilla":
        for layer in model.blocks:
            layer.gamma.requires_grad_(False)
        optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=cfg.lr)
        solver = None
    else:
        problem = ceq.ConstrainedProblem(_loss, [ceq.Equality(ceq.gammas)])
        options = {"rho": cfg.rho} if method == "resilient" else {}
        solver = ceq.Solver(problem, model, "resilient" if method == "resilient" else "lagrangian",
                            lambda params: torch.optim.Adam(params, lr=cfg.lr), dual_lr=cfg.eta_d,
                            variable_lr=cfg.eta_p, **options)
    g = torch.Generator().manual_seed(seed)
    gammas, lams, slacks = [], [], []
    run = ChainRun(method, np.empty(0), np.empty(0), np.empty(0))
    L = cfg.layers
    for epoch in range(cfg.epochs):
        order = torch.randperm(cfg.n_train, generator=g)
        for start in range(0, cfg.n_train, cfg.batch_size):
            idx = order[start:start + cfg.batch_size]
            batch = (data.x_train[idx], data.y_train[idx])
            if solver is None:
                optimizer.zero_grad()
                _loss(model(batch[0]), batch).backward()
                optimizer.step()
                gammas.append(np.zeros(L)), lams.append(np.zeros(L)), slacks.append(np.zeros(L))
                continue
            record = solver.step(batch)
            gammas.append(record.values["equality_gammas"].detach().numpy().copy())
            lams.append(record.multipliers["equality_gammas"].detach().numpy().copy())
            u = record.slacks.get("equality_gammas")
            slacks.append(np.zeros(L) if u is None else u.detach().numpy().copy())
        mse, mse_p, err, bound = _evaluate(model, data, seed)
        run.val_mse.append(mse), run.val_mse_projected.append(mse_p)
        run.equivariance_error.append(err), run.bound.append(bound)
    run.gamma, run.lam, run.slack = np.array(gammas), np.array(lams), np.array(slacks)
    run.contributions = ceq.branch_contributions(model, data.x_val).numpy()
    run.model = model
    return run
