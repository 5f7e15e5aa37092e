"""ACE step vs CR step vs vanilla step on a relaxed model, side by side.

* ``vanilla`` — formulation ``"none"`` (J_0 only; γ not enforced);
* ``ace``     — formulation ``"lagrangian"`` on ``Equality(gammas)`` (ACE Alg. 1);
* ``ace_resilient`` — formulation ``"resilient"`` (ACE Alg. 2);
* ``cr``      — formulation ``"schedule"`` (γ set by CR's triangle) plus a fixed penalty.

The model comes from :func:`build_model`; switch ``--model`` to an N-body model once
``constrained_eq.nn`` provides one (add it to ``MODELS``).

Run::

    PYTHONPATH=. python benchmarks/strategies.py --steps 200
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch
import torch.nn.functional as F

import constrained_eq as ceq
from benchmarks._common import RelaxedMLP, devices, interleaved, machine, parse_args, print_table

MODELS: dict[str, Callable[[], tuple[torch.nn.Module, tuple[int, ...], int]]] = {
    # name -> () -> (model, input shape of one batch, output features)
    "relaxed_mlp": lambda: (RelaxedMLP(in_features=16, width=128, depth=4, out_features=3), (500, 16), 3),
    "relaxed_mlp_small": lambda: (RelaxedMLP(in_features=16, width=32, depth=4, out_features=3), (500, 16), 3),
}


def build_model(name: str) -> tuple[torch.nn.Module, tuple[int, ...], int]:
    """Return (model, batch input shape, output features) of a registered model."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; choose one of {sorted(MODELS)}")
    return MODELS[name]()


def make_solver(model: torch.nn.Module, strategy: str, example_batch) -> ceq.Solver:
    loss = ceq.Objective(lambda out, batch: F.mse_loss(out, batch[1]))
    constraints: list = [ceq.Equality(ceq.gammas)]
    options: dict = {}
    formulation = {"vanilla": "none", "ace": "lagrangian", "ace_resilient": "resilient", "cr": "schedule"}[strategy]
    if strategy == "cr":
        # Stand-in for CR's Lie-derivative / ‖Wx‖ regulariser: a fixed-weight penalty (weight 0.01 as CR).
        constraints.append(ceq.Penalty(ceq.Target(lambda m, b, o: o.pow(2).mean().reshape(1), "output_norm"),
                                       weight=0.01, name="cr_penalty"))
        options["epochs"] = 100
    if strategy == "ace_resilient":
        options["rho"] = 1.0
    problem = ceq.ConstrainedProblem(loss, constraints)
    return ceq.Solver(problem, model, formulation, torch.optim.Adam(model.parameters(), lr=5e-4), dual_lr=1e-2,
                      check_finite=False, example_batch=example_batch, **options)


def main() -> None:
    import argparse

    extra = argparse.ArgumentParser(add_help=False)
    extra.add_argument("--model", default="relaxed_mlp", choices=sorted(MODELS))
    model_name = extra.parse_known_args()[0].model
    args = parse_args(__doc__.splitlines()[0], steps=200, warmup=20)
    for device in devices(args.device):
        print(f"machine: {machine(device)}")
        torch.manual_seed(0)
        base, shape, out_features = build_model(model_name)
        base = base.to(device)
        generator = torch.Generator().manual_seed(0)
        batch = (torch.randn(*shape, generator=generator).to(device),
                 torch.randn(*shape[:-1], out_features, generator=generator).to(device))
        print(f"model: {model_name}, {sum(p.numel() for p in base.parameters())} parameters; batch {shape}")
        solvers = {name: make_solver(copy.deepcopy(base), name, batch) for name in ("vanilla", "ace", "ace_resilient", "cr")}
        timings = interleaved({name: (lambda s=s: s.step(batch)) for name, s in solvers.items()},
                              args.steps, args.warmup, device)
        ref = timings["vanilla"].median
        rows = [(name, f"{t.median * 1e3:.3f}", f"{t.median / ref:.3f}") for name, t in timings.items()]
        print_table(f"{device.type}: median step over {args.steps} interleaved steps", rows,
                    ("strategy", "ms/step", "ratio vs vanilla"))


if __name__ == "__main__":
    main()
