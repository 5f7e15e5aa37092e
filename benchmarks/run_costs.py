"""Where the main job's wall time goes: start-up, building, steps, validation, checkpoints, test, plots.

Each measurement is a whole new process, as a user meets it:

* ``import torch``, ``import constrained_eq`` and ``ceq --version`` (``python -m constrained_eq --version``),
  timed from spawn to exit;
* ``ceq run problems/nbody_quick.yaml`` (the README's main job), timed from spawn to exit, with the time
  spent in each phase read inside the process by wrapping the functions that do it (``Solver.step``, the
  fit loop's validation, checkpoint writes, the test pass, the plots, building, loading the file) and the
  time spent importing read from ``python -X importtime``.

Fixed costs are what is not training steps or validation; the target is wall ≤ 1.25 × (steps + validation),
and a validation pass ≤ 2 × a training epoch on as many samples.
``--compare DIR`` runs the same measurements, interleaved, on another checkout of the package (e.g.
``git worktree add /tmp/ceq_before <commit>``), and prints both side by side.

Run::

    OMP_NUM_THREADS=1 python benchmarks/run_costs.py --repeats 3 --compare /tmp/ceq_before
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PROBLEM = str(ROOT / "problems" / "nbody_quick.yaml")  # the same file for every checkout

# the child: wrap the functions of each phase, run the CLI, print the seconds spent in each as one JSON line
CHILD = r"""
import json, sys, time
t0 = time.perf_counter()
spent = {}

def timed(owner, name, phase):
    original = getattr(owner, name)
    def wrapper(*args, **kwargs):
        start = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            spent[phase] = spent.get(phase, 0.0) + time.perf_counter() - start
    setattr(owner, name, wrapper)

from constrained_eq.run import cli, plots
try:  # run_problem's module: run/runner.py, or run/build.py in older checkouts
    from constrained_eq.run import runner
except ImportError:
    from constrained_eq.run import build as runner
try:  # the training loop's module: constrained_eq/training/loop.py, or run/train.py in older checkouts
    from constrained_eq.training import loop as train
except ImportError:
    from constrained_eq.run import train
try:
    from constrained_eq.core.solver.engine import Solver
except ImportError:  # before core/ was split
    from constrained_eq.core.engine import Solver
timed(Solver, "step", "steps")
timed(train._Fit, "_validate", "validation")
timed(train, "save_fit_checkpoint", "checkpoints")
timed(runner, "_test", "test")
timed(plots, "plot_run", "plots")  # called by the fit loop in older versions
if hasattr(runner, "plot_run"):
    timed(runner, "plot_run", "plots")  # called by run_problem once the summary is out
timed(runner, "build", "build")  # the name run_problem calls
timed(cli, "_load", "load problem")
try:  # the console script's exit where the checkout has one (flush, atexit handlers, no teardown)
    from constrained_eq.run.console import console as run_cli
except ImportError:
    run_cli = lambda: sys.exit(cli.main())  # noqa: E731
def finished(original=cli.main):
    def main(*args):
        status = original(*args)
        spent["in process"] = time.perf_counter() - t0
        print("PHASES " + json.dumps(spent), flush=True)
        return status
    return main
cli.main = finished()
sys.argv = ["ceq", *sys.argv[1:]]
run_cli()
"""


def _spawn(args: list[str], src: Path, env_extra: dict | None = None) -> tuple[float, str, str]:
    """Run ``python args`` in ``src`` (so its package is the one imported); ``(wall seconds, stdout, stderr)``."""
    env = {**os.environ, "PYTHONPATH": str(src), **(env_extra or {})}
    start = time.perf_counter()
    done = subprocess.run([sys.executable, *args], cwd=src, env=env, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - start
    if done.returncode not in (0, 3):
        raise SystemExit(f"{args} failed ({done.returncode}):\n{done.stderr[-2000:]}")
    return wall, done.stdout, done.stderr


def _import_seconds(stderr: str) -> float:
    """Seconds inside top-level imports, from ``-X importtime`` (nested imports are inside their parents)."""
    total = 0
    for line in stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            _, cumulative, name = line.split("|")
            if name.startswith(" ") and not name.startswith("  ") and cumulative.strip().isdigit():
                total += int(cumulative)
    return total / 1e6


def measure(src: Path, out: Path) -> dict[str, float]:
    """One round of every measurement on the package at ``src``."""
    row = {"import torch": _spawn(["-c", "import torch"], src)[0],
           "import constrained_eq": _spawn(["-c", "import constrained_eq"], src)[0],
           "ceq --version": _spawn(["-m", "constrained_eq", "--version"], src)[0]}
    wall, stdout, stderr = _spawn(["-X", "importtime", "-c", CHILD, "run", PROBLEM, "--out", str(out), "--overwrite",
                                   "--quiet"], src)
    phases = json.loads(next(line for line in stdout.splitlines() if line.startswith("PHASES "))[7:])
    row.update({"main job wall": wall, "imports": _import_seconds(stderr), **phases})
    work = row["steps"] + row["validation"]
    row["fixed (wall − steps − validation)"] = wall - work
    row["wall / (steps + validation)"] = wall / work
    row["validation / a training epoch on as many samples"] = _validation_ratio(row)
    return row


def _validation_ratio(row: dict[str, float]) -> float:
    """One validation pass over one training epoch's cost scaled to the validation split's size."""
    import yaml

    problem = yaml.safe_load(Path(PROBLEM).read_text())
    options, training = problem["task"]["options"], problem["training"]
    epochs, every = training["epochs"], training.get("eval_every", 1)
    per_epoch = row["steps"] / epochs * options["n_val"] / options["n_train"]
    return row["validation"] / (epochs // every) / per_epoch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3, help="rounds of every measurement (medians reported)")
    parser.add_argument("--compare", type=Path, help="another checkout of the package, measured in the same rounds")
    args = parser.parse_args()
    sources = {"this checkout": ROOT, **({f"{args.compare}": args.compare.resolve()} if args.compare else {})}
    rows: dict[str, list[dict[str, float]]] = {name: [] for name in sources}
    with tempfile.TemporaryDirectory() as tmp:
        _spawn(["-m", "constrained_eq", "run", PROBLEM, "--out", tmp, "--overwrite", "--quiet", "--epochs", "1"],
               ROOT)  # the N-body cache is written once, before anything is timed
        for _ in range(args.repeats):
            for name, src in sources.items():
                rows[name].append(measure(src, Path(tmp) / name.replace("/", "_")))
                print(f"  {name}: main job {rows[name][-1]['main job wall']:.2f} s", file=sys.stderr)
    keys = list(dict.fromkeys(k for runs in rows.values() for k in runs[0]))
    print(f"median of {args.repeats} rounds, seconds (OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')})")
    print("| measurement | " + " | ".join(sources) + " |")
    print("|---|" + "---|" * len(sources))
    for key in keys:
        cells = [f"{statistics.median(r[key] for r in runs if key in r):.2f}" if any(key in r for r in runs) else "—"
                 for runs in rows.values()]
        print(f"| {key} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
