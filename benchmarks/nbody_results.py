"""Produce docs/results/nbody.md: every strategy of the papers on N-body, mean ± std over seeds.

    python benchmarks/nbody_results.py --epochs 60 --n-train 1000 --seeds 0 1 2 --jobs 2

Runs `problems/nbody_quick.yaml` under each strategy (vanilla, ACE equality by plain descent–ascent
and by the augmented Lagrangian, ACE resilient, CR, SO(3) augmentation, fixed penalty) and seed, then a
training-set-size sweep for vanilla vs ACE, and writes the tables (test MSE of the deployed model)
with the exact budget.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

STRATEGIES = ["vanilla", "ace_equality", "ace_augmented", "ace_resilient", "cr", "augmentation", "penalty"]
SWEEP = ("vanilla", "ace_augmented")


def _run(job: tuple[str, int, int, int, str, int]) -> dict:
    strategy, seed, n_train, epochs, out, n_eval = job
    import torch

    torch.set_num_threads(1)
    import yaml

    from constrained_eq.run.problem_file import load_problem_file
    from constrained_eq.run.runner import run_problem

    run_dir = Path(out) / f"{strategy}-n{n_train}-s{seed}"
    raw = yaml.safe_load(Path("problems/nbody_quick.yaml").read_text())
    raw["task"]["options"].update(n_train=n_train, n_val=n_eval, n_test=n_eval)
    Path(out).mkdir(parents=True, exist_ok=True)
    problem = Path(out) / f"nbody-n{n_train}-e{n_eval}.yaml"
    if not problem.exists():
        tmp = problem.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(yaml.safe_dump(raw))
        os.replace(tmp, problem)
    spec = load_problem_file(problem, {"strategy": strategy, "training.seed": seed, "training.epochs": epochs})
    summary = run_problem(spec, run_dir, overwrite=True, progress=False)
    return {"strategy": strategy, "seed": seed, "n_train": n_train, "test": summary["test"]["loss"],
            "test_projected": summary["test_projected"]["loss"], "seconds": summary["wall_seconds"]}


def _stat(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.4f}"
    return f"{statistics.mean(values):.4f} ± {statistics.stdev(values):.4f}"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--n-train", type=int, default=1000)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--sizes", type=int, nargs="*", default=[250, 500, 2000, 3000])
    parser.add_argument("--size-seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--n-eval", type=int, default=1000, help="validation and test trajectories each")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--out", default="runs/nbody_results")
    parser.add_argument("--doc", default="docs/results/nbody.md")
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    jobs = [(s, seed, args.n_train, args.epochs, args.out, args.n_eval) for s in STRATEGIES for seed in args.seeds]
    jobs += [(s, seed, n, args.epochs, args.out, args.n_eval) for n in args.sizes for s in SWEEP
             for seed in args.size_seeds if n != args.n_train or seed not in args.seeds]
    began = time.perf_counter()
    with ProcessPoolExecutor(args.jobs) as pool:
        results = list(pool.map(_run, jobs))
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / "results.json").write_text(json.dumps(results, indent=2))
    lines = [
        "# N-body results",
        "",
        f"Produced by `python benchmarks/nbody_results.py --epochs {args.epochs} --n-train {args.n_train} "
        f"--seeds {' '.join(map(str, args.seeds))} --sizes {' '.join(map(str, args.sizes))} "
        f"--size-seeds {' '.join(map(str, args.size_seeds))} --n-eval {args.n_eval} --jobs {args.jobs}` "
        f"({(time.perf_counter() - began) / 60:.1f} min on a 2-core CPU).",
        "",
        f"Budget: `problems/nbody_quick.yaml` (EGNN, hidden 32, 4 layers; batch 50; Adam lr 1e-3) with "
        f"{args.n_train} training and {args.n_eval} validation / {args.n_eval} test trajectories, {args.epochs} "
        "epochs, the model of the best validation epoch "
        "(projected model for strategies that deploy f_{θ,0}). Test MSE of positions at frame 40.",
        "",
        "| strategy | test MSE, deployed f_eq (projected) | test MSE, f_eq + f_neq | seconds/run |",
        "|---|---|---|---|",
    ]
    for strategy in STRATEGIES:
        rows = [r for r in results if r["strategy"] == strategy and r["n_train"] == args.n_train
                and r["seed"] in args.seeds]
        lines.append(f"| {strategy} | {_stat([r['test_projected'] for r in rows])} | "
                     f"{_stat([r['test'] for r in rows])} | {statistics.mean(r['seconds'] for r in rows):.0f} |")
    lines += ["", "Test MSE (projected model) vs training-set size:", "",
              "| n_train | vanilla | ACE γ = 0, augmented Lagrangian (f_eq) |", "|---|---|---|"]
    for n in sorted(set(args.sizes) | {args.n_train}):
        cells = []
        for strategy in SWEEP:
            rows = [r["test_projected"] for r in results if r["strategy"] == strategy and r["n_train"] == n]
            cells.append(_stat(rows) if rows else "-")
        lines.append(f"| {n} | {' | '.join(cells)} |")
    Path(args.doc).parent.mkdir(parents=True, exist_ok=True)
    Path(args.doc).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
