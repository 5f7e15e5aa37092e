"""The primal optimizer's implementation inside a Solver step: Adam single-tensor vs foreach vs fused.

On a CPU, ``torch.optim.Adam`` defaults to its single-tensor loop: a handful of kernel launches per
parameter tensor, so its step costs about as much as a layer of the model when the model has many small
tensors (the N-body EGNN has 62). ``foreach=True`` groups them; ``fused=True`` does the whole update in
one kernel per device and dtype. Same update law, same result to float rounding.

For each model, three Solvers built from ``problems/nbody_full.yaml`` (the ACE strategy
``ace_equality``, Adam lr 5e-4, weight decay 1e-12) differ only in ``optimizer.options``: ``{}``
(PyTorch's default), ``{foreach: true}`` and ``{fused: true}``. The script first checks that the three
reach the same parameters after 5 steps (float32, rtol 1e-4), then times full ``Solver.step`` calls in
interleaved rounds, and also the optimizer's ``step()`` alone on the same gradients.

Run::

    PYTHONPATH=. python benchmarks/primal_optimizer.py --steps 100 --threads 1
    PYTHONPATH=. python benchmarks/primal_optimizer.py --steps 50 --threads 1 --model segnn

In a problem file: ``optimizer: {name: adam, lr: 5.0e-4, options: {fused: true}}`` (or ``--set
optimizer.options.fused=true``); in Python: ``torch.optim.Adam(model.parameters(), lr, fused=True)``.
"""

from __future__ import annotations

import copy
import statistics
from typing import Any

import torch

from benchmarks._common import (
    CLOCKS,
    devices,
    interleaved,
    machine,
    nbody_spec,
    parse_args,
    print_table,
    temporary_data_cache,
)

VARIANTS: dict[str, dict[str, Any]] = {"single-tensor (default)": {}, "foreach": {"foreach": True},
                                       "fused": {"fused": True}}


def _built(model: str, options: dict[str, Any], device: torch.device) -> Any:
    from constrained_eq.run.build import build

    spec = nbody_spec("ace_equality", model)
    spec["optimizer"] = {**spec["optimizer"], "options": dict(options)}
    return build(spec, device)


def check_same_parameters(built: dict[str, Any], batch: Any, steps: int = 5) -> float:
    """Step every variant ``steps`` times on ``batch`` from the same weights; return the max |Δθ| to the default."""
    states = {name: copy.deepcopy(b.solver.state_dict()) for name, b in built.items()}
    for b in built.values():
        for _ in range(steps):
            b.solver.step(batch)
    reference = list(next(iter(built.values())).model.parameters())
    worst = 0.0
    for b in built.values():
        for a, p in zip(reference, b.model.parameters(), strict=True):
            torch.testing.assert_close(p, a, rtol=1e-4, atol=1e-6)
            worst = max(worst, (p - a).abs().max().item() if p.numel() else 0.0)
    for name, b in built.items():  # back to the common start
        b.solver.load_state_dict(states[name])
    return worst


def optimizer_step_times(built: dict[str, Any], rounds: int, clock: str) -> dict[str, float]:
    """Median time of the primal optimizer's ``step()`` alone (gradients left from the last Solver step)."""
    now = CLOCKS[clock]
    optimizers = {name: b.solver.optimizer.primal_optimizers[0] for name, b in built.items()}
    samples: dict[str, list[float]] = {name: [] for name in optimizers}
    for _ in range(rounds):
        for name, optimizer in optimizers.items():
            start = now()
            optimizer.step()
            samples[name].append(now() - start)
    return {name: statistics.median(s) for name, s in samples.items()}


def main() -> None:
    import argparse

    extra = argparse.ArgumentParser(add_help=False)
    extra.add_argument("--model", default="egnn", choices=("egnn", "segnn"))
    model = extra.parse_known_args()[0].model
    args = parse_args(__doc__.splitlines()[0], steps=100, warmup=10)
    from constrained_eq._utils.loaders import to_device

    temporary_data_cache()
    for device in devices(args.device):
        print(f"machine: {machine(device, args.clock)}")
        # build() seeds from the file's training.seed: every variant starts from the same weights
        built = {name: _built(model, options, device) for name, options in VARIANTS.items()}
        batch = to_device(next(iter(next(iter(built.values())).train_loader)), device)
        solver_model = next(iter(built.values())).model
        tensors = sum(1 for _ in solver_model.parameters())
        print(f"model: {type(solver_model).__name__}, {sum(p.numel() for p in solver_model.parameters())} "
              f"parameters in {tensors} tensors; batch {batch.num_graphs} graphs")
        worst = check_same_parameters(built, batch)
        print(f"same parameters after 5 steps (rtol 1e-4): max |Δθ| = {worst:.1e}")
        timings = interleaved({name: (lambda b=b, batch=batch: b.solver.step(batch)) for name, b in built.items()},
                              args.steps, args.warmup, device, args.clock)
        alone = optimizer_step_times(built, args.steps, args.clock) if device.type == "cpu" else {}
        ref = timings["single-tensor (default)"].median
        rows = [(name, f"{t.median * 1e3:.3f}", f"{t.median / ref:.3f}",
                 f"{alone[name] * 1e3:.3f}" if name in alone else "—") for name, t in timings.items()]
        print_table(f"{device.type}: median Solver.step over {args.steps} interleaved steps (ms)", rows,
                    ("Adam", "Solver.step (ms)", "ratio vs default", "Adam.step alone (ms)"))


if __name__ == "__main__":
    main()
