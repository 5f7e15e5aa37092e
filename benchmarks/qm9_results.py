"""Measure SchNet base vs ACE f^eq on a QM9 subset and print the rows of docs/results/qm9.md.

    OMP_NUM_THREADS=1 PYTHONPATH=. python benchmarks/qm9_results.py --limit 10000 --epochs 12 --seeds 0 1 \
        --strategies vanilla --out runs/qm9/vanilla

(one process per strategy, run side by side; one thread each is much faster than oversubscribed threads).

Runs ``problems/qm9_schnet_ace.yaml`` (qm9pack, offline) under ``vanilla`` (the projected SchNet
trained alone = SchNet base), ``ace_augmented`` and ``ace_equality`` for each seed, one run after the
other, and writes ``<out>/results.json`` with the test MAE of the deployed model (f^eq for ACE).
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import yaml

STRATEGIES = ("vanilla", "ace_augmented", "ace_equality")


def run_one(strategy: str, seed: int, limit: int, epochs: int, out: Path) -> dict:
    """Train one (strategy, seed) and return its metrics summary."""
    from constrained_eq.run.problem_file import load_problem_file
    from constrained_eq.run.runner import run_problem

    raw = yaml.safe_load(Path("problems/qm9_schnet_ace.yaml").read_text(encoding="utf-8"))
    raw["task"]["options"]["limit"] = limit
    out.mkdir(parents=True, exist_ok=True)
    problem = out / f"qm9_schnet-l{limit}.yaml"
    problem.write_text(yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
    spec = load_problem_file(problem, {"strategy": strategy, "training.seed": seed, "training.epochs": epochs})
    run_dir = out / f"{strategy}-l{limit}-s{seed}"
    resume = (run_dir / "checkpoint.pt").exists()
    return run_problem(spec, run_dir, resume=resume, progress=False)


def main() -> None:
    """Run every strategy and seed, then print a markdown table of test MAE."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=10000)
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--strategies", nargs="+", default=list(STRATEGIES))
    parser.add_argument("--out", default="runs/qm9")
    args = parser.parse_args()
    out = Path(args.out)
    results: dict[str, list[dict]] = {}
    for seed in args.seeds:
        for strategy in args.strategies:
            summary = run_one(strategy, seed, args.limit, args.epochs, out)
            row = {"seed": seed, "test_mae": summary["test_projected"]["mae"],
                   "test_mae_unprojected": summary["test"]["mae"], "best_epoch": summary["best_epoch"],
                   "seconds": summary["wall_seconds"]}
            results.setdefault(strategy, []).append(row)
            print(strategy, json.dumps(row), flush=True)
            (out / "results.json").write_text(json.dumps(results, indent=2), encoding="utf-8")
    print("| strategy | test MAE (deployed) | seeds |\n|---|---|---|")
    for strategy, rows in results.items():
        maes = [r["test_mae"] for r in rows]
        spread = f" ± {statistics.stdev(maes):.4f}" if len(maes) > 1 else ""
        print(f"| {strategy} | {statistics.mean(maes):.4f}{spread} | {len(maes)} |")


if __name__ == "__main__":
    main()
