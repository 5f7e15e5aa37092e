"""Peak and current RSS over a long Solver run and a long ``fit``: nothing may accumulate history.

1. ``Solver.step`` alone: a small relaxed model for ``--steps`` steps (default 20,000) with the Lagrangian
   and the resilient formulations, keeping each step's record alive only until the next (as a logging
   loop does); the process RSS is printed every ``steps/10`` steps.
2. ``fit`` into a run folder for the same number of steps (``--fit-epochs`` epochs of 100 steps), with
   γ, λ and u of *every* step streamed to ``steps.csv`` (``steps_every=1``), a history row, a checkpoint
   and a validation pass each epoch. The RSS is logged as a validation metric (``val_rss_mib`` in
   ``history.csv``).

Flat RSS after warm-up means no per-step growth.

Run::

    PYTHONPATH=. python benchmarks/memory.py --steps 20000
"""

from __future__ import annotations

import argparse
import resource
import tempfile
from pathlib import Path

import torch
import torch.nn.functional as F

import constrained_eq as ceq
from benchmarks._common import RelaxedMLP, machine, print_table
from constrained_eq.training.settings import Evaluation, Logging


def rss_mib() -> float:
    """Current resident set size of this process in MiB (Linux ``/proc/self/statm``)."""
    with open("/proc/self/statm") as statm:
        pages = int(statm.read().split()[1])
    return pages * resource.getpagesize() / 2**20


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20_000)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"machine: {machine(torch.device('cpu'))}")
    generator = torch.Generator().manual_seed(0)
    batch = (torch.randn(64, 16, generator=generator), torch.randn(64, 3, generator=generator))
    for formulation, options in (("lagrangian", {}), ("resilient", {"rho": 1.0})):
        torch.manual_seed(0)
        model = RelaxedMLP(width=32, depth=8)
        problem = ceq.ConstrainedProblem(lambda out, b: F.mse_loss(out, b[1]), [ceq.Equality(ceq.gammas)])
        solver = ceq.Solver(problem, model, formulation, torch.optim.Adam(model.parameters(), lr=1e-3),
                            dual_lr=1e-3, check_finite=True, **options)
        rows = []
        every = max(args.steps // 10, 1)
        for step in range(1, args.steps + 1):
            record = solver.step(batch)
            if step % every == 0 or step == 100:
                rows.append((str(step), f"{rss_mib():.1f}", f"{peak_rss_mib():.1f}", f"{record.loss.item():.4f}"))
        print_table(f"{formulation}: RSS over {args.steps} steps (MiB)", rows, ("step", "rss", "peak rss", "loss"))
        first, last = float(rows[1][1]), float(rows[-1][1])
        print(f"RSS growth from step {rows[1][0]} to {rows[-1][0]}: {last - first:+.1f} MiB")
    fit_run(args.steps // 100)


def fit_run(epochs: int) -> None:
    """A long ``fit`` streaming every step's γ, λ, u to ``steps.csv``; RSS logged per epoch."""
    import csv

    from torch.utils.data import DataLoader, TensorDataset

    from constrained_eq.training.loop import fit

    generator = torch.Generator().manual_seed(0)
    data = TensorDataset(torch.randn(6400, 16, generator=generator), torch.randn(6400, 3, generator=generator))
    train = DataLoader(data, batch_size=64, shuffle=True, generator=torch.Generator().manual_seed(0))
    val = DataLoader(TensorDataset(*data[:256]), batch_size=256)
    torch.manual_seed(0)
    model = RelaxedMLP(width=32, depth=8)
    problem = ceq.ConstrainedProblem(lambda out, b: F.mse_loss(out, b[1]), [ceq.Equality(ceq.gammas)])
    solver = ceq.Solver(problem, model, "lagrangian", torch.optim.Adam(model.parameters(), lr=1e-3), dual_lr=1e-3)
    with tempfile.TemporaryDirectory() as folder:
        run_dir = Path(folder) / "run"
        fit(solver, train, val, epochs=epochs, run_dir=run_dir, progress=False,
            evaluation=Evaluation(metrics={"rss_mib": lambda m, loader: rss_mib()}), logging=Logging(steps_every=1))
        with open(run_dir / "history.csv", newline="") as handle:
            history = list(csv.DictReader(handle))
        with open(run_dir / "steps.csv", newline="") as handle:
            streamed = sum(1 for _ in handle) - 1
    every = max(epochs // 10, 1)
    rows = [(row["epoch"], str((int(row["epoch"]) + 1) * len(train)), f"{float(row['val_rss_mib']):.1f}")
            for row in history if (int(row["epoch"]) + 1) % every == 0 or row["epoch"] == "1"]
    print_table(f"fit: {epochs} epochs × {len(train)} steps, every step streamed to steps.csv ({streamed} rows)",
                rows, ("epoch", "steps", "rss (MiB)"))
    print(f"RSS growth from step {rows[0][1]} to {rows[-1][1]}: {float(rows[-1][2]) - float(rows[0][2]):+.1f} MiB; "
          f"peak RSS of the process {peak_rss_mib():.1f} MiB")


if __name__ == "__main__":
    main()
