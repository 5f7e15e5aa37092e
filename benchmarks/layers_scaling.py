"""Engine overhead as the number of constrained layers grows (1 → 1024, one dense multiplier).

For a model of L tiny homotopic layers (:class:`TinyRelaxed`), the overhead is

    overhead(L) = median over rounds of (Solver.step − hand-written step of the same round),

where the hand-written step is ACE Alg. 1 in raw PyTorch with the same update law as the Solver
(Adam on θ, plain SGD on γ, λ += η_d γ; :class:`benchmarks.engine_vs_hand.HandLoop`), timed in
interleaved rounds with the Solver step on the same model object (each keeps its own optimizers and
λ). The target is overhead(1024) ≤ 2 × overhead(1).

Run::

    PYTHONPATH=. python benchmarks/layers_scaling.py --steps 200
"""

from __future__ import annotations

import statistics

import torch

from benchmarks._common import TinyRelaxed, devices, interleaved, machine, parse_args, print_table
from benchmarks.engine_vs_hand import HandLoop, make_solver

LAYERS = (1, 4, 16, 64, 256, 1024)
TARGET = 2.0


def main() -> None:
    args = parse_args(__doc__.splitlines()[0], steps=200, warmup=20)
    for device in devices(args.device):
        print(f"machine: {machine(device, args.clock)}")
        generator = torch.Generator().manual_seed(0)
        batch = (torch.randn(32, 4, generator=generator).to(device), torch.randn(32, 4, generator=generator).to(device))
        rows, overheads = [], {}
        for layers in LAYERS:
            torch.manual_seed(0)
            base = TinyRelaxed(layers).to(device)
            # one model shared by both loops: the forward and backward run on the same tensors in memory,
            # so only the code around them differs (separate copies differ by a few % in layout alone)
            hand, solver = HandLoop(base), make_solver(base)
            timings = interleaved({"hand": lambda hand=hand, batch=batch: hand.step(batch),
                                   "solver": lambda solver=solver, batch=batch: solver.step(batch)},
                                  args.steps, args.warmup, device, args.clock)
            plain, step = timings["hand"].median, timings["solver"].median
            # paired: the two steps of one round ran back to back, so their difference cancels drifts
            paired = statistics.median(s - h for s, h in zip(timings["solver"].samples, timings["hand"].samples,
                                                               strict=True))
            overheads[layers] = paired
            rows.append((str(layers), f"{plain * 1e3:.3f}", f"{step * 1e3:.3f}", f"{paired * 1e3:.3f}",
                         f"{paired / plain:.1%}"))
        print_table(f"{device.type}: median over {args.steps} interleaved steps (ms)", rows,
                    ("layers", "hand", "solver", "overhead (paired)", "overhead/hand"))
        ratio = overheads[LAYERS[-1]] / overheads[LAYERS[0]]
        print(f"\noverhead({LAYERS[-1]}) / overhead({LAYERS[0]}) = {ratio:.2f} (target ≤ {TARGET}): "
              f"{'OK' if ratio <= TARGET else 'ABOVE TARGET'}")


if __name__ == "__main__":
    main()
