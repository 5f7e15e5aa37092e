"""Engine overhead as the number of constrained layers grows (1 → 1024, one dense multiplier).

For a model of L tiny homotopic layers (:class:`TinyRelaxed`), the overhead is

    overhead(L) = median(Solver.step) − median(plain step),

where the plain step is forward + MSE + backward + Adam on the same model (γ included), timed in
interleaved rounds with the Solver step. The target is overhead(1024) ≤ 2 × overhead(1).

Run::

    PYTHONPATH=. python benchmarks/layers_scaling.py --steps 200
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F

import constrained_eq as ceq
from benchmarks._common import TinyRelaxed, devices, interleaved, machine, parse_args, print_table

LAYERS = (1, 4, 16, 64, 256, 1024)
TARGET = 2.0


def plain_step(model: torch.nn.Module, optimizer: torch.optim.Optimizer, batch) -> None:
    optimizer.zero_grad()
    F.mse_loss(model(batch[0]), batch[1]).backward()
    optimizer.step()


def main() -> None:
    args = parse_args(__doc__.splitlines()[0], steps=200, warmup=20)
    for device in devices(args.device):
        print(f"machine: {machine(device)}")
        generator = torch.Generator().manual_seed(0)
        batch = (torch.randn(32, 4, generator=generator).to(device), torch.randn(32, 4, generator=generator).to(device))
        problem = ceq.ConstrainedProblem(lambda out, b: F.mse_loss(out, b[1]), [ceq.Equality(ceq.gammas)])
        rows, overheads = [], {}
        for layers in LAYERS:
            torch.manual_seed(0)
            base = TinyRelaxed(layers).to(device)
            plain_model = copy.deepcopy(base)
            plain_opt = torch.optim.Adam(plain_model.parameters(), lr=1e-3)
            model = copy.deepcopy(base)
            solver = ceq.Solver(problem, model, "lagrangian", torch.optim.Adam(model.parameters(), lr=1e-3),
                                dual_lr=1e-3, check_finite=False)
            timings = interleaved({"plain": lambda: plain_step(plain_model, plain_opt, batch),
                                   "solver": lambda: solver.step(batch)}, args.steps, args.warmup, device)
            plain, step = timings["plain"].median, timings["solver"].median
            overheads[layers] = step - plain
            rows.append((str(layers), f"{plain * 1e3:.3f}", f"{step * 1e3:.3f}", f"{(step - plain) * 1e3:.3f}",
                         f"{(step - plain) / plain:.1%}"))
        print_table(f"{device.type}: median over {args.steps} interleaved steps (ms)", rows,
                    ("layers", "plain", "solver", "overhead", "overhead/plain"))
        ratio = overheads[LAYERS[-1]] / overheads[LAYERS[0]]
        print(f"\noverhead({LAYERS[-1]}) / overhead({LAYERS[0]}) = {ratio:.2f} (target ≤ {TARGET}): "
              f"{'OK' if ratio <= TARGET else 'ABOVE TARGET'}")


if __name__ == "__main__":
    main()
