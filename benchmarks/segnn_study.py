r"""SEGNN on N-body: vanilla (strict) vs ACE (ACE's placement, γ = 0) vs CR, mean ± std validation curves.

    python benchmarks/segnn_study.py --seeds 0 1 --epochs 30 --out runs/segnn_study \
        --plot docs/results/segnn_validation.png

Runs `problems/nbody_segnn.yaml` under `vanilla` (the projected SEGNN, 147,424 parameters) and as committed
(`ace_augmented`, ACE's placement, 937,960 parameters while training), and `problems/nbody_segnn_cr.yaml`
(CR), one process after the other; prints the table (deployed test MSE at the best validation epoch of the
deployed model, and ACE's f_eq + f_neq at the same epoch) and plots validation MSE of the deployed model
per epoch, mean ± std over seeds, as ACE's Fig. 2 (left). A second table pairs each config with vanilla
seed by seed. ``--resume`` continues each run from its last checkpoint, so a long study survives
interruptions; ``--merge DIR …`` trains nothing and tabulates, plots (and with ``--save FILE`` writes) the
results of several study folders together::

    python benchmarks/segnn_study.py --merge runs/fixed3000/s0 runs/fixed3000/s1 \
        --plot docs/results/segnn_fixed_3000_300.png --save docs/results/segnn_fixed_3000_300.json

``--time STEPS`` trains nothing: it builds each config exactly as a study run would and times its
training step side by side (interleaved rounds on one batch, median; see ``benchmarks/_common.py``),
the cost side of the comparison::

    PYTHONPATH=. python benchmarks/segnn_study.py --time 30 --n-train 3000 --threads 1 --clock thread
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
    "ACE (nuPI), f_eq": ("problems/nbody_segnn.yaml", {"strategy": "ace_equality", "dual_optimizer": "nupi"},
                         "val_projected_loss"),
    "CR (SEGNN_Rel.)": ("problems/nbody_segnn_cr.yaml", {}, "val_projected_loss"),
}
DEFAULT_CONFIGS = ["vanilla SEGNN", "ACE (augmented Lagrangian), f_eq", "CR (SEGNN_Rel.)"]


def _slug(name: str) -> str:
    return "-".join(w.strip("(),").lower() for w in name.split()[:3] if w not in {"f_eq", "SEGNN"})


def _overrides(pairs: list[str]) -> dict:
    """``KEY=VALUE`` strings as a dict of problem-file overrides (numbers as numbers, ``5e-4`` included)."""
    import yaml

    def scalar(text: str):
        for kind in (int, float):
            try:
                return kind(text)
            except ValueError:
                pass
        return yaml.safe_load(text)

    return {key: scalar(value) for key, value in (p.split("=", 1) for p in pairs)}


def run(name: str, seed: int, epochs: int, out: Path, extra: dict | None = None, resume: bool = False) -> dict:
    from constrained_eq.run.problem_file import load_problem_file
    from constrained_eq.run.runner import run_problem

    problem, overrides, curve_key = CONFIGS[name]
    spec = load_problem_file(problem, {**overrides, **(extra or {}), "training.seed": seed,
                                       "training.epochs": epochs})
    run_dir = out / f"{_slug(name)}-s{seed}"
    resume = resume and (run_dir / "checkpoint.pt").exists()  # continue a stopped run, else start afresh
    summary = run_problem(spec, run_dir, resume=resume, overwrite=not resume, progress=False)
    rows = [r for r in csv.DictReader((run_dir / "history.csv").open()) if r.get("val_loss")]
    curve = [float(r[curve_key]) if r.get(curve_key) else float(r["val_loss"]) for r in rows]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    return {"config": name, "seed": seed, "test_deployed": summary["test_projected"]["loss"],
            "test_relaxed": summary["test"]["loss"], "best_epoch": metrics["best_epoch"],
            "seconds": metrics["seconds"], "epochs": [int(r["epoch"]) + 1 for r in rows], "curve": curve,
            "val_deployed": min(curve), "overrides": extra or {}}


def time_steps(names: list[str], extra: dict, steps: int, warmup: int, clock: str) -> None:
    """Print the median training step of each config (as :func:`run` builds it) and its ratio to the first."""
    import torch

    from benchmarks._common import interleaved, machine, print_table
    from constrained_eq._utils.loaders import to_device
    from constrained_eq.run.build import build
    from constrained_eq.run.problem_file import load_problem_file

    device = torch.device("cpu")
    solvers, batch = {}, None
    for name in names:
        problem, overrides, _ = CONFIGS[name]
        built = build(load_problem_file(problem, {**overrides, **extra}), device)
        batch = batch if batch is not None else to_device(next(iter(built.train_loader)), device)
        count = sum(p.numel() for p in built.model.parameters())
        print(f"{name}: {problem}, {count:,} parameters while training")
        solvers[name] = built.solver
    timings = interleaved({n: (lambda s=s: s.step(batch)) for n, s in solvers.items()}, steps, warmup, device, clock)
    print(f"machine: {machine(device, clock)}")
    ref = timings[names[0]].median
    rows = [(n, f"{t.median * 1e3:.1f}", f"{t.median / ref:.3f}") for n, t in timings.items()]
    print_table(f"median training step over {steps} interleaved steps (batch {batch.num_graphs} graphs)", rows,
                ("config", "ms/step", f"ratio vs {names[0]}"))


def _ms(values: list[float], digits: str = ".5f") -> str:
    mean = statistics.mean(values)
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{mean:{digits}} ± {std:{digits}} ({', '.join(format(v, digits) for v in values)})"


def plot(results: list[dict], path: Path, title: str) -> None:
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
        epochs = next(r.get("epochs") for r in results if r["config"] == name) or np.arange(1, len(mean) + 1)
        ax.plot(epochs, mean, marker=".", label=f"{name} ({len(curves)} seed{'s' if len(curves) > 1 else ''})")
        ax.fill_between(epochs, mean - std, mean + std, alpha=0.25)
    ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel("validation MSE of the deployed model")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--out", type=Path, default=Path("runs/segnn_study"))
    parser.add_argument("--plot", type=Path, default=Path("docs/results/segnn_validation.png"))
    parser.add_argument("--configs", nargs="+", default=DEFAULT_CONFIGS, choices=list(CONFIGS))
    parser.add_argument("--n-train", type=int, default=1000, help="training trajectories")
    parser.add_argument("--eval-every", type=int, default=1, help="validate every N epochs")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a problem-file key in every run (repeatable)")
    parser.add_argument("--merge", type=Path, nargs="+", metavar="DIR",
                        help="run nothing: merge the results.json of these study folders, print the table and plot")
    parser.add_argument("--save", type=Path, metavar="FILE", help="with --merge: write the merged results to FILE")
    parser.add_argument("--title", default=None, help="plot title (default: from --n-train)")
    parser.add_argument("--resume", action="store_true",
                        help="continue each run from its folder's last checkpoint where one exists")
    parser.add_argument("--time", type=int, metavar="STEPS",
                        help="train nothing: time STEPS training steps of each config side by side")
    parser.add_argument("--warmup", type=int, default=5, help="with --time: untimed steps of each config first")
    parser.add_argument("--threads", type=int, default=1, help="with --time: torch.set_num_threads")
    parser.add_argument("--clock", default="wall", choices=["wall", "thread"],
                        help="with --time: wall time, or this thread's CPU time (a shared machine; --threads 1)")
    args = parser.parse_args()
    title = args.title or f"SEGNN, N-body, {args.n_train:,} training trajectories"
    if args.merge:
        missing = [str(folder / "results.json") for folder in args.merge if not (folder / "results.json").is_file()]
        if missing:
            raise SystemExit(f"segnn_study.py --merge: no study results in {', '.join(missing)}: "
                             "give folders a study run wrote (--out)")
        results = [r for folder in args.merge for r in json.loads((folder / "results.json").read_text())]
        if not results:
            raise SystemExit(f"segnn_study.py --merge: {', '.join(map(str, args.merge))} hold no finished runs yet")
        n_train = {r["overrides"].get("task.options.n_train") for r in results}
        if not args.title and len(n_train) == 1 and None not in n_train:
            title = f"SEGNN, N-body, {n_train.pop():,} training trajectories"
        plot(results, args.plot, title)
        print_table(results)
        if args.save:
            args.save.write_text(json.dumps(results, indent=1))
        return
    extra = {"task.options.n_train": args.n_train, "training.eval_every": args.eval_every,
             **_overrides(args.set)}
    if args.time:
        import torch

        torch.set_num_threads(args.threads)
        time_steps(args.configs, extra, args.time, args.warmup, args.clock)
        return
    args.out.mkdir(parents=True, exist_ok=True)
    results_file = args.out / "results.json"
    results = json.loads(results_file.read_text()) if results_file.exists() else []
    for seed in args.seeds:
        for name in args.configs:
            results = [r for r in results if (r["config"], r["seed"]) != (name, seed)]
            results.append(run(name, seed, args.epochs, args.out, extra, args.resume))
            results_file.write_text(json.dumps(results, indent=1))
            plot(results, args.plot, title)
    print_table(results)


def print_table(results: list[dict]) -> None:
    """Mean ± std (per seed in brackets, seeds in order) of every config in ``results``, as markdown tables.

    The second table pairs every config with the first one (vanilla) seed by seed: the differences
    d_s = MSE_config,s − MSE_first,s, their mean as a percentage of the first's mean, how many seeds the config
    leads on, and the paired t statistic t = mean(d) / (std(d) / √n) (n − 1 degrees of freedom).
    """
    by_config = {name: sorted((r for r in results if r["config"] == name), key=lambda r: r["seed"])
                 for name in dict.fromkeys(r["config"] for r in results)}
    print("| model | seeds | deployed test MSE | f_eq + f_neq test MSE | best val (deployed) | best epoch | s/run |")
    print("|---|---|---|---|---|---|---|")
    for name, rows in by_config.items():
        print(f"| {name} | {[r['seed'] for r in rows]} | {_ms([r['test_deployed'] for r in rows])} | "
              f"{_ms([r['test_relaxed'] for r in rows])} | {_ms([r['val_deployed'] for r in rows])} | "
              f"{[r['best_epoch'] for r in rows]} | {statistics.mean(r['seconds'] for r in rows):.0f} |")
    first, *others = by_config
    print(f"\n| paired with {first} (deployed test MSE) | per seed | mean | leads on | t | validation leads |")
    print("|---|---|---|---|---|---|")
    for name in others:
        print(paired_row(name, by_config[first], by_config[name]))


def curve_leads(reference: list[dict], rows: list[dict], seeds: set[int]) -> str:
    """At how many evaluations the mean validation curve of ``rows`` is below that of ``reference`` (``seeds`` only)."""
    import numpy as np

    ours, theirs = (np.mean([r["curve"] for r in group if r["seed"] in seeds], axis=0) for group in (rows, reference))
    if ours.shape != theirs.shape:
        return "curves of different lengths"
    return f"{int((ours < theirs).sum())} of {len(ours)} evaluations"


def paired_row(name: str, reference: list[dict], rows: list[dict]) -> str:
    """One row of the paired table: ``rows`` against ``reference`` on the seeds both have."""
    base = {r["seed"]: r["test_deployed"] for r in reference}
    pairs = [(r["test_deployed"] - base[r["seed"]], base[r["seed"]]) for r in rows if r["seed"] in base]
    if not pairs:
        return f"| {name} | no common seeds | | | | |"
    seeds = {r["seed"] for r in rows} & set(base)
    diffs = [d for d, _ in pairs]
    mean = statistics.mean(diffs)
    relative = mean / statistics.mean(b for _, b in pairs)
    spread = statistics.stdev(diffs) if len(diffs) > 1 else 0.0
    t = mean / (spread / len(diffs) ** 0.5) if spread > 0 else float("nan")
    leads = sum(d < 0 for d in diffs)
    return (f"| {name} | {', '.join(f'{d:+.5f}' for d in diffs)} | {mean:+.5f} ({relative:+.1%}) | "
            f"{leads} of {len(diffs)} | {t:+.2f} | {curve_leads(reference, rows, seeds)} |")

if __name__ == "__main__":
    main()
