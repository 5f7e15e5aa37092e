"""ACE step vs CR step vs vanilla step on a relaxed model, side by side.

* ``vanilla`` — formulation ``"none"`` (J_0 only; γ not enforced);
* ``ace``     — formulation ``"lagrangian"`` on ``Equality(gammas)`` (ACE Alg. 1);
* ``ace_resilient`` — formulation ``"resilient"`` (ACE Alg. 2);
* ``cr``      — formulation ``"schedule"`` (γ set by CR's triangle) plus a fixed penalty;
* ``cr_every4`` — ``cr`` with the penalty evaluated every 4 steps (``every=4``, weight ×4 on those steps).
  Its steps alternate one dear step and three cheap ones, so each of its timed samples is a block of 4
  consecutive steps divided by 4 (the median of those is its mean cost per step).

Models (``--model``):

* ``relaxed_mlp`` (default, fast) and ``relaxed_mlp_small``: :class:`RelaxedMLP` of width 128 / 32
  on a random batch of 500 × 16. Its branches are plain linear maps without a group action, so CR's
  penalty is a stand-in (weight 0.01 on the mean squared output) and vanilla is the same model
  with γ left alone.
* ``egnn`` and ``segnn``: the N-body models as ``ceq run problems/nbody_full.yaml --strategy …``
  builds them (:func:`constrained_eq.run.build.build`: EGNN_vel hidden 64, 4 layers, Adam 5e-4,
  batch 100; ``segnn`` swaps in the nbody task's SEGNN, hidden 64, l ≤ 1), on one batch of 100
  simulated 5-body graphs (a small set simulated into a temporary ``$CEQ_CACHE``). There
  ``vanilla`` is the file's ``vanilla`` strategy: the *projected* equivariant model
  (:func:`constrained_eq.tasks.projected`) with formulation ``"none"``; ``ace`` is ``ace_equality``;
  ``cr`` is ``schedule`` plus the real ``LieDerivative(weight=0.01)`` penalty (Lie derivative and
  ‖Wx‖ of every relaxed branch), ``cr_every4`` the same with ``LieDerivative(weight=0.01, every=4)``.
  These solvers keep the file path's ``check_finite=True``. Two more rows time hand-written loops (Adam on
  every parameter, no Solver, no γ constraint) on the projected model (``hand_projected``) and on the
  relaxed one (``hand_relaxed``): their ratio is what the f_neq branches alone cost, and ``ace`` over
  ``hand_relaxed`` is what the engine adds.

Run::

    PYTHONPATH=. python benchmarks/strategies.py --steps 200
    PYTHONPATH=. python benchmarks/strategies.py --model egnn --steps 100
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F

import constrained_eq as ceq
from benchmarks._common import (
    RelaxedMLP,
    devices,
    interleaved,
    machine,
    nbody_spec,
    parse_args,
    print_table,
    temporary_data_cache,
)

STRATEGIES = ("vanilla", "ace", "ace_resilient", "cr", "cr_every4")
# the strategy of a problem file that gives each row
FILE_STRATEGIES = {"vanilla": "vanilla", "ace": "ace_equality", "ace_resilient": "ace_resilient", "cr": "cr",
                   "cr_every4": "cr"}
EVERY = {"cr_every4": 4}  # penalty evaluated every k steps; timed in blocks of k steps


@dataclass
class Setup:
    """One solver per strategy, all from the same initial model, and the batch they step on."""

    description: str
    batch: Any
    solvers: dict[str, ceq.Solver]
    hand: dict[str, Callable[[], object]] = field(default_factory=dict)  # hand-written loops, no Solver


def make_solver(model: torch.nn.Module, strategy: str, example_batch) -> ceq.Solver:
    loss = ceq.Objective(lambda out, batch: F.mse_loss(out, batch[1]))
    constraints: list = [ceq.Equality(ceq.gammas)]
    options: dict = {}
    formulation = {"vanilla": "none", "ace": "lagrangian", "ace_resilient": "resilient"}.get(strategy, "schedule")
    if strategy.startswith("cr"):
        # Stand-in for CR's Lie-derivative / ‖Wx‖ regulariser: a fixed-weight penalty (weight 0.01 as CR).
        constraints.append(ceq.Penalty(ceq.Target(lambda m, b, o: o.pow(2).mean().reshape(1), "output_norm"),
                                       weight=0.01, every=EVERY.get(strategy, 1), name="cr_penalty"))
        options["epochs"] = 100
    if strategy == "ace_resilient":
        options["rho"] = 1.0
    problem = ceq.ConstrainedProblem(loss, constraints)
    return ceq.Solver(problem, model, formulation, torch.optim.Adam(model.parameters(), lr=5e-4), dual_lr=1e-2,
                      check_finite=False, example_batch=example_batch, **options)


def relaxed_mlp(width: int) -> Callable[[torch.device], Setup]:
    def setup(device: torch.device) -> Setup:
        torch.manual_seed(0)
        base = RelaxedMLP(in_features=16, width=width, depth=4, out_features=3).to(device)
        generator = torch.Generator().manual_seed(0)
        batch = (torch.randn(500, 16, generator=generator).to(device),
                 torch.randn(500, 3, generator=generator).to(device))
        solvers = {name: make_solver(copy.deepcopy(base), name, batch) for name in STRATEGIES}
        return Setup(f"RelaxedMLP(width={width}), {_count(base)} parameters; "
                     "batch (500, 16)", batch, solvers)

    return setup


def _count(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def nbody(model: str) -> Callable[[torch.device], Setup]:
    def setup(device: torch.device) -> Setup:
        from constrained_eq._utils.loaders import to_device
        from constrained_eq.run.build import build

        temporary_data_cache()
        built = {name: build(_every(nbody_spec(FILE_STRATEGIES[name], model), EVERY.get(name, 1)), device)
                 for name in STRATEGIES}
        batch = to_device(next(iter(built["ace"].train_loader)), device)
        relaxed, projected = built["ace"].model, built["vanilla"].model
        hand = {f"hand_{kind}": _hand_loop(build(nbody_spec(strategy, model), device), batch)
                for kind, strategy in (("projected", "vanilla"), ("relaxed", "ace_equality"))}
        return Setup(f"{type(relaxed).__name__} ({_count(relaxed)} parameters relaxed, {_count(projected)} projected), "
                     f"{len(ceq.gammas(relaxed))} γ; batch {batch.num_graphs} graphs × "
                     f"{batch.loc.shape[0] // batch.num_graphs} nodes", batch,
                     {name: b.solver for name, b in built.items()}, hand)

    return setup


def _hand_loop(built: Any, batch: Any) -> Callable[[], object]:
    """Adam on every parameter of the built model, no Solver: what its architecture alone costs per step.

    Its Adam takes the Solver's learning rate and weight decay (the file's 1e-12 costs ~0.2 ms per step
    on the EGNN in Adam's single-tensor loop, so leaving it out would bill it to the engine).
    """
    model, task = built.model, built.task
    defaults = built.solver.optimizer.primal_optimizers[0].defaults
    optimizer = torch.optim.Adam(model.parameters(), lr=defaults["lr"], weight_decay=defaults["weight_decay"])

    def step() -> None:
        optimizer.zero_grad()
        task.loss(task.forward(model, batch), batch).backward()
        optimizer.step()

    return step


def _every(spec: dict[str, Any], every: int) -> dict[str, Any]:
    """The spec with its ``LieDerivative`` penalty evaluated every ``every`` steps."""
    if every != 1:
        spec["constraints"] = [f"{item.strip()[:-1]}, every={every})" if item.startswith("LieDerivative(") else item
                               for item in spec["constraints"]]
    return spec


def _variants(setup: Setup) -> dict[str, Callable[[], object]]:
    """One timed call per strategy: one step, or a block of k steps for a penalty evaluated every k."""
    solvers = {name: _block(s, setup.batch, EVERY.get(name, 1)) for name, s in setup.solvers.items()}
    return {**solvers, **setup.hand}


def _block(solver: ceq.Solver, batch: Any, steps: int) -> Callable[[], object]:
    return lambda: [solver.step(batch) for _ in range(steps)]


MODELS: dict[str, Callable[[torch.device], Setup]] = {
    "relaxed_mlp": relaxed_mlp(128),
    "relaxed_mlp_small": relaxed_mlp(32),
    "egnn": nbody("egnn"),
    "segnn": nbody("segnn"),
}


def main() -> None:
    import argparse

    extra = argparse.ArgumentParser(add_help=False)
    extra.add_argument("--model", default="relaxed_mlp", choices=sorted(MODELS))
    model_name = extra.parse_known_args()[0].model
    args = parse_args(__doc__.splitlines()[0], steps=200, warmup=20)
    for device in devices(args.device):
        print(f"machine: {machine(device, args.clock)}")
        setup = MODELS[model_name](device)
        print(f"model: {model_name}: {setup.description}")
        timings = interleaved(_variants(setup), args.steps, args.warmup, device, args.clock)
        for name, k in EVERY.items():
            timings[name].samples = [t / k for t in timings[name].samples]
        ref = timings["vanilla"].median
        rows = [(name, f"{t.median * 1e3:.3f}", f"{t.median / ref:.3f}") for name, t in timings.items()]
        print_table(f"{device.type}: median step over {args.steps} interleaved steps", rows,
                    ("strategy", "ms/step", "ratio vs vanilla"))

if __name__ == "__main__":
    main()
