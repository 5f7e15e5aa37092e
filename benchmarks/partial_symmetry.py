r"""Partial symmetry on the broken-chain family: vanilla vs equality-ACE (Alg. 1) vs resilient (Alg. 2).

For each seed and each data setting (``eps = 0`` symmetric, ``eps > 0`` broken at layer ``depth``) it
trains a :class:`~constrained_eq.models.vn_chain.VNChain` three ways and records per-step γ, λ, u and
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
from constrained_eq.models.vn_chain import VNChain
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
    for _ in range(cfg.epochs):
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


def _ms(values) -> str:
    a = np.asarray(values, float)
    return f"{a.mean():.4g} ± {a.std():.2g}"


def main() -> None:
    from constrained_eq.run.diagnostics import check_resilient, classify_equality, slack_ranking
    from constrained_eq.run.report_plots import plot_dynamics, plot_equivariance

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=200)
    parser.add_argument("--out", type=Path, default=Path("docs/results/partial_symmetry"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    args.out.mkdir(parents=True, exist_ok=True)
    settings = [("symmetric eps=0", dict(eps=0.0, depth=2)), ("broken eps=0.5 at layer 2", dict(eps=0.5, depth=2)),
                ("broken eps=0.5 at layer 1", dict(eps=0.5, depth=1))]
    lines, summary, t0 = [], {}, time.time()
    for name, kw in settings:
        cfg = ChainConfig(epochs=args.epochs, **kw)
        rows = {m: [] for m in METHODS}
        for seed in args.seeds:
            for method in METHODS:
                run = fit_chain(method, cfg, seed)
                info = {"mse": run.val_mse[-1], "mse_projected": run.val_mse_projected[-1],
                        "err_first": run.equivariance_error[0], "err_last": run.equivariance_error[-1],
                        "bound_last": run.bound[-1], "under_bound": bool(np.all(np.array(run.equivariance_error)
                                                                                <= np.array(run.bound) + 1e-6)),
                        "gamma": run.gamma[-1].tolist(), "lam": run.lam[-1].tolist(), "u": run.slack[-1].tolist()}
                if method == "equality":
                    info["signatures"] = classify_equality(run.gamma, run.lam)
                if method == "resilient":
                    check = check_resilient(run.gamma, run.lam, run.slack, cfg.rho)
                    info.update(ranking=slack_ranking(run.slack).tolist(), kkt_ok=check.ok,
                                u_minus_lam=np.abs(check.u - check.lam_over_rho).max().item())
                rows[method].append(info)
                if seed == args.seeds[0] and method != "vanilla":
                    tag = f"{name.split()[0]}_{kw['depth']}_{method}"
                    plot_dynamics(run.gamma, run.lam, run.slack if method == "resilient" else None,
                                  args.out / f"dynamics_{tag}.png", title=f"{name}, {method}")
                    plot_equivariance(run.equivariance_error, run.bound, args.out / f"equivariance_{tag}.png",
                                      title=f"{name}, {method}")
        summary[name] = rows
        lines += [f"\n### {name} ({len(args.seeds)} seeds, {args.epochs} epochs)\n",
                  "| method | val MSE (deployed) | val MSE f_eq (γ=0) | equiv. error epoch 1 → last "
                  "| Thm 4.2 bound (last) |",
                  "|---|---|---|---|---|"]
        for m in METHODS:
            r = rows[m]
            lines.append(f"| {m} | {_ms([x['mse'] for x in r])} | {_ms([x['mse_projected'] for x in r])} | "
                         f"{_ms([x['err_first'] for x in r])} → {_ms([x['err_last'] for x in r])} | "
                         f"{_ms([x['bound_last'] for x in r])} |")
        res, eq = rows["resilient"], rows["equality"]
        lines.append("")
        for i, (x, e) in enumerate(zip(res, eq, strict=True)):
            lines.append(f"- seed {args.seeds[i]}: resilient u = {np.round(x['u'], 3).tolist()}, "
                         f"ranking {x['ranking']}, "
                         f"max|u−λ/ρ| = {x['u_minus_lam']:.2g}, KKT ok {x['kkt_ok']}, error ≤ bound at every epoch "
                         f"{x['under_bound']}; equality γ = {np.round(e['gamma'], 3).tolist()}, "
                         f"λ = {np.round(e['lam'], 3).tolist()}, signatures {e['signatures']}")
    (args.out / "summary.json").write_text(json.dumps(summary, indent=1))
    (args.out / "tables.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    print(f"\ntotal {time.time() - t0:.0f} s")


if __name__ == "__main__":
    main()
