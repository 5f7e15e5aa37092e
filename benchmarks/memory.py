"""Peak and current RSS over a long Solver run: the engine must not accumulate history.

Trains a small relaxed model for ``--steps`` steps (default 20,000) with the Lagrangian and the
resilient formulations, keeping each step's record alive only until the next (as a logging loop
does), and prints the process RSS every ``steps/10`` steps. Flat RSS after warm-up means no
per-step growth.

Run::

    PYTHONPATH=. python benchmarks/memory.py --steps 20000
"""

from __future__ import annotations

import argparse
import resource

import torch
import torch.nn.functional as F

import constrained_eq as ceq
from benchmarks._common import RelaxedMLP, machine, print_table


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


if __name__ == "__main__":
    main()
