r"""SEGNN on N-body: vanilla (strict) vs ACE (ACE's placement, γ = 0) vs CR, mean ± std validation curves.

    python benchmarks/segnn_study.py --seeds 0 1 --epochs 30 --out runs/segnn_study \
        --plot docs/results/segnn_validation.png

Runs `problems/nbody_segnn.yaml` under `vanilla` (the projected SEGNN, 147,424 parameters) and as committed
(`ace_augmented`, ACE's placement, 937,960 parameters while training), and `problems/nbody_segnn_cr.yaml`
(CR), one process after the other; prints the table (deployed test MSE at the best validation epoch of the
deployed model, and ACE's f_eq + f_neq at the same epoch) and plots validation MSE of the deployed model
per epoch, mean ± std over seeds, as ACE's Fig. 2 (left).
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
from pathlib import Path

CONFIGS = {
    "vanilla SEGNN": ("problems/nbody_segnn.yaml", {"strategy": "vanilla"}, "val_loss"),
    "ACE (augmented Lagrangian), f_eq": ("problems/nbody_segnn.yaml", {}, "val_projected_loss"),
    "CR (SEGNN_Rel.)": ("problems/nbody_segnn_cr.yaml", {}, "val_projected_loss"),
}


def run(name: str, seed: int, epochs: int, out: Path) -> dict:
    from constrained_eq.build import run_problem
    from constrained_eq.problem_file import load_problem_file

    problem, overrides, curve_key = CONFIGS[name]
    spec = load_problem_file(problem, {**overrides, "training.seed": seed, "training.epochs": epochs})
    run_dir = out / f"{name.split()[0].lower()}-s{seed}"
    summary = run_problem(spec, run_dir, overwrite=True, progress=False)
    rows = list(csv.DictReader((run_dir / "history.csv").open()))
    curve = [float(r[curve_key]) if r.get(curve_key) else float(r["val_loss"]) for r in rows]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    return {"config": name, "seed": seed, "test_deployed": summary["test_projected"]["loss"],
            "test_relaxed": summary["test"]["loss"], "best_epoch": metrics["best_epoch"],
            "seconds": metrics["seconds"], "curve": curve}


def _ms(values: list[float], digits: str = ".5f") -> str:
    mean = statistics.mean(values)
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{mean:{digits}} ± {std:{digits}} ({', '.join(format(v, digits) for v in values)})"


def plot(results: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, ax = plt.subplots(figsize=(6, 4))
    for name in CONFIGS:
        curves = np.array([r["curve"] for r in results if r["config"] == name])
        if not len(curves):
            continue
        mean, std = curves.mean(0), curves.std(0)
        epochs = np.arange(1, len(mean) + 1)
        ax.plot(epochs, mean, label=f"{name} ({len(curves)} seeds)")
        ax.fill_between(epochs, mean - std, mean + std, alpha=0.25)
    ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel("validation MSE of the deployed model")
    ax.set_title("SEGNN, N-body, 1,000 training trajectories")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--out", type=Path, default=Path("runs/segnn_study"))
    parser.add_argument("--plot", type=Path, default=Path("docs/results/segnn_validation.png"))
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    results = []
    for seed in args.seeds:
        for name in args.configs:
            results.append(run(name, seed, args.epochs, args.out))
            (args.out / "results.json").write_text(json.dumps(results, indent=1))
            plot(results, args.plot)
    print("| model | deployed test MSE | f_eq + f_neq test MSE | best epoch | s/run |")
    print("|---|---|---|---|---|")
    for name in args.configs:
        rows = [r for r in results if r["config"] == name]
        print(f"| {name} | {_ms([r['test_deployed'] for r in rows])} | {_ms([r['test_relaxed'] for r in rows])} | "
              f"{[r['best_epoch'] for r in rows]} | {statistics.mean(r['seconds'] for r in rows):.0f} |")


if __name__ == "__main__":
    main()
