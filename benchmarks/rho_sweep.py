"""Resilient slack cost ρ over decades on the N-body field task and the broken chain (docs/results/*.md).

    python benchmarks/rho_sweep.py nbody --rhos 1e-4 1e-3 1e-2 1e-1 1 --seeds 0 1 2 --out runs/rho_nbody
    python benchmarks/rho_sweep.py chain --rhos 1e-4 1e-3 1e-2 1e-1 1 --seeds 0 1 2 --epochs 200 --settings broken

``nbody`` runs `problems/nbody_field.yaml` (EGNN hidden 32, 500 / 200 / 200 trajectories, 20 epochs, field
(0, 0, 1)) under `ace_resilient` with each ρ and under `vanilla`; the deployed model is f_eq + γ f_neq at the
best validation epoch (test MSE), with the slacks u at the end. ``chain`` trains the broken-chain students of
`benchmarks/partial_symmetry.py` (break ε = 0.5 at the last layer, and the symmetric ε = 0 control) with
256 validation samples for reading and 256 further held-out samples as the test split; the model is the last
epoch's. One process, one run after the other; prints markdown tables.
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
from pathlib import Path


def _ms(values: list[float], digits: str = ".4f") -> str:
    mean = statistics.mean(values)
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{mean:{digits}} ± {std:{digits}} ({', '.join(format(v, digits) for v in values)})"


def nbody(rhos: list[float], seeds: list[int], out: Path, problem: str, epochs: int | None) -> list[dict]:
    from constrained_eq.run.problem_file import load_problem_file
    from constrained_eq.run.runner import run_problem

    results = []
    configs = [("vanilla", {"strategy": "vanilla"})] + [
        (f"resilient ρ={rho:g}", {"strategy": "ace_resilient", "formulation.name": "resilient",
                                  "formulation.options": {"rho": rho}}) for rho in rhos]
    for name, overrides in configs:
        for seed in seeds:
            more = {"training.epochs": epochs} if epochs else {}
            spec = load_problem_file(problem, {**overrides, **more, "training.seed": seed})
            run_dir = out / f"{name.replace(' ', '').replace('=', '')}-s{seed}"
            summary = run_problem(spec, run_dir, overwrite=True, progress=False)
            rows = list(csv.DictReader((run_dir / "history.csv").open()))
            slack_keys = [k for k in rows[-1] if ".slack." in k]
            results.append({"config": name, "seed": seed, "test": summary["test"]["loss"],
                            "test_projected": summary["test_projected"]["loss"],
                            "train_first_epoch": float(rows[0]["train_loss"]),
                            "slack_sum": sum(float(rows[-1][k]) for k in slack_keys)})
            (out / "results.json").write_text(json.dumps(results, indent=1))
    print("| configuration | test MSE, deployed f_eq + γ f_neq | test MSE, projected f_eq | Σ u at the end |")
    print("|---|---|---|---|")
    for name, _ in configs:
        rows = [r for r in results if r["config"] == name]
        print(f"| {name} | {_ms([r['test'] for r in rows])} | {_ms([r['test_projected'] for r in rows])} | "
              f"{_ms([r['slack_sum'] for r in rows], '.3g')} |")
    return results


SETTINGS = {"broken": ("broken ε=0.5 at layer 2", {"eps": 0.5, "depth": 2}),
            "symmetric": ("symmetric ε=0", {"eps": 0.0, "depth": 2})}


def chain(rhos: list[float], seeds: list[int], epochs: int, out: Path, which: list[str]) -> list[dict]:
    import torch

    import constrained_eq as ceq
    from benchmarks.partial_symmetry import ChainConfig, _loss, fit_chain
    from constrained_eq.data.broken_chain import make_broken_chain

    results = []
    settings = dict(SETTINGS[w] for w in which)
    for setting, knobs in settings.items():
        configs = [("vanilla", None)] + [(f"resilient ρ={rho:g}", rho) for rho in rhos]
        for name, rho in configs:
            for seed in seeds:
                cfg = ChainConfig(epochs=epochs, n_val=512, rho=rho if rho is not None else 1.0, **knobs)
                run = fit_chain("vanilla" if rho is None else "resilient", cfg, seed)
                data = make_broken_chain(cfg.n_train, cfg.n_val, channels=cfg.channels, layers=cfg.layers,
                                         depth=cfg.depth, eps=cfg.eps, breaking=cfg.breaking, seed=seed)
                split = {"val": slice(0, 256), "test": slice(256, 512)}
                row = {"setting": setting, "config": name, "seed": seed,
                       "u": run.slack[-1].tolist(), "gamma": run.gamma[-1].tolist()}
                with torch.no_grad():
                    for part, idx in split.items():
                        x, y = data.x_val[idx], data.y_val[idx]
                        row[part] = _loss(run.model(x), (x, y)).item()
                        row[f"{part}_projected"] = _loss(ceq.project(run.model)(x), (x, y)).item()
                results.append(row)
                (out / "results.json").write_text(json.dumps(results, indent=1))
        print(f"\n### {setting} ({len(seeds)} seeds, {epochs} epochs)\n")
        print("| configuration | val MSE, deployed | test MSE, deployed f_eq + γ f_neq | test MSE, f_eq "
              "| u at the end |")
        print("|---|---|---|---|---|")
        for name, _ in configs:
            rows = [r for r in results if r["config"] == name and r["setting"] == setting]
            us = "; ".join("[" + ", ".join(f"{u:.3f}" for u in r["u"]) + "]" for r in rows)
            print(f"| {name} | {_ms([r['val'] for r in rows])} | {_ms([r['test'] for r in rows])} | "
                  f"{_ms([r['test_projected'] for r in rows])} | {us} |")
    return results


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("what", choices=("nbody", "chain"))
    parser.add_argument("--rhos", type=float, nargs="+", default=[1e-4, 1e-3, 1e-2, 1e-1, 1.0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=None, help="chain: default 200; nbody: the file's")
    parser.add_argument("--problem", default="problems/nbody_field.yaml")
    parser.add_argument("--out", type=Path, default=Path("runs/rho_sweep"))
    parser.add_argument("--settings", nargs="+", choices=tuple(SETTINGS), default=list(SETTINGS),
                        help="chain only: which data settings")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    if args.what == "nbody":
        nbody(args.rhos, args.seeds, args.out, args.problem, args.epochs)
    else:
        chain(args.rhos, args.seeds, args.epochs or 200, args.out, args.settings)



if __name__ == "__main__":
    main()
