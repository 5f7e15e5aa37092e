"""γ's oscillation under plain dual ascent, nuPI and the augmented Lagrangian (docs/results/nbody.md).

    python benchmarks/dual_damping.py --seeds 0 1 2 --out runs/dual_damping

Runs `problems/nbody_quick.yaml` (EGNN hidden 32, 500 training trajectories, 20 epochs, η_p = 0.05 on γ,
η_d = 0.01) under `ace_equality` with each dual optimizer, under `ace_augmented` and `vanilla`, one process
after the other, and prints one markdown table: the amplitude of γ (max |γ_i| over the second half of the
epochs), |γ| at the end, and the deployed (projected) test MSE at the best validation epoch.
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
from pathlib import Path

CONFIGS = {
    "ace_equality, plain ascent": {"strategy": "ace_equality"},
    "ace_equality, nuPI κ_p = 10": {"strategy": "ace_equality", "dual_optimizer": {"name": "nupi",
                                                                                   "options": {"kappa_p": 10.0}}},
    "ace_equality, nuPI κ_p = 30": {"strategy": "ace_equality", "dual_optimizer": {"name": "nupi",
                                                                                   "options": {"kappa_p": 30.0}}},
    "ace_equality, nuPI κ_p = 90": {"strategy": "ace_equality", "dual_optimizer": {"name": "nupi",
                                                                                   "options": {"kappa_p": 90.0}}},
    "ace_augmented, plain ascent": {"strategy": "ace_augmented"},
    "vanilla": {"strategy": "vanilla"},
}


def _gamma_stats(history: Path) -> tuple[float, float]:
    rows = list(csv.DictReader(history.open()))
    keys = [k for k in rows[0] if ".value." in k]
    if not keys:
        return float("nan"), float("nan")
    size = [max(abs(float(r[k])) for k in keys) for r in rows]
    return max(size[len(size) // 2:]), size[-1]


def run(name: str, overrides: dict, seed: int, out: Path, problem: str) -> dict:
    from constrained_eq.run.problem_file import load_problem_file
    from constrained_eq.run.runner import run_problem

    spec = load_problem_file(problem, {**overrides, "training.seed": seed})
    run_dir = out / f"{name.replace(' ', '').replace(',', '-').replace('=', '')}-s{seed}"
    summary = run_problem(spec, run_dir, overwrite=True, progress=False)
    amplitude, final = _gamma_stats(run_dir / "history.csv")
    return {"config": name, "seed": seed, "test_projected": summary["test_projected"]["loss"],
            "test": summary["test"]["loss"], "amplitude": amplitude, "final": final}


def _fmt(values: list[float], digits: str) -> str:
    if any(v != v for v in values):
        return "—"
    mean = statistics.mean(values)
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    per = ", ".join(format(v, digits) for v in values)
    return f"{mean:{digits}} ± {std:{digits}} ({per})"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--out", default="runs/dual_damping")
    parser.add_argument("--problem", default="problems/nbody_quick.yaml")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results = []
    for name, overrides in CONFIGS.items():
        for seed in args.seeds:
            results.append(run(name, overrides, seed, out, args.problem))
            (out / "results.json").write_text(json.dumps(results, indent=1))
    print("| configuration | max \\|γ\\|, epochs 10–19 | \\|γ\\| at the end | deployed f_eq test MSE |")
    print("|---|---|---|---|")
    for name in CONFIGS:
        rows = [r for r in results if r["config"] == name]
        print(f"| {name} | {_fmt([r['amplitude'] for r in rows], '.3f')} | {_fmt([r['final'] for r in rows], '.3f')} "
              f"| {_fmt([r['test_projected'] for r in rows], '.4f')} |")


if __name__ == "__main__":
    main()
