"""``torch.compile`` (default inductor backend) of a ``Solver`` step vs eager, and without a Solver.

Six variants of one training step on copies of the same model and batch, timed in interleaved
rounds:

* ``plain eager`` / ``plain compiled``: forward, loss, backward, Adam on all parameters;
* ``hand eager``: ACE Alg. 1 written by hand (``benchmarks/engine_vs_hand.py``'s ``HandLoop``: Adam on θ,
  SGD on γ, λ += η_d γ);
* ``solver eager`` / ``solver model``: ``Solver.step`` (ACE: ``lagrangian`` on ``Equality(gammas)``, SGD
  on γ, ``check_finite=False``) with the model, or ``torch.compile(model)``, handed to the Solver;
* ``solver compile``: ``Solver(..., compile=True)``: forward, loss, targets and Lagrangians compiled
  together (with their backward), and the optimizer updates (see ``constrained_eq/core/solver/compiled.py``).

Compilation happens in the first two steps of each compiled variant (a compiled optimizer step
compiles again once its state exists), outside the timed region; their wall time, the graph breaks
dynamo reported (``compile=True``: the 3 that ``Optimizer.step`` makes on purpose, one per optimizer)
and the first-step loss against plain eager (same initial weights) are printed. Inductor's on-disk
cache is pointed at a temporary folder, so the first compile is a cold one; the second compiled
copy of a model reuses dynamo's graphs (same code, parameters are graph inputs), so its first step
is short.

Models: ``relaxed_mlp`` (:class:`RelaxedMLP`, batch 500 × 16) and ``egnn`` (the N-body EGNN as the
``nbody`` task builds it, one batch of 100 simulated 5-body graphs).

Inductor needs a C++ compiler on CPU (Triton on CUDA); the script first compiles a tiny function
on each device and, if that fails, prints why and skips the device.

Run::

    PYTHONPATH=. python benchmarks/compile.py --steps 60 --threads 1
"""

from __future__ import annotations

import argparse
import atexit
import copy
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

import constrained_eq as ceq
from benchmarks._common import RelaxedMLP, devices, interleaved, machine, parse_args, print_table, temporary_data_cache
from benchmarks.engine_vs_hand import HandLoop


def inductor_problem(device: torch.device) -> str | None:
    """``None`` if inductor compiles and runs a small function on ``device``, else the reason."""
    def fn(x: torch.Tensor) -> torch.Tensor:
        return torch.sin(x) * 2 + 1

    try:
        x = torch.randn(64, device=device)
        torch.testing.assert_close(torch.compile(fn)(x), fn(x))
    except Exception as err:  # any failure means: no inductor here
        reason = f"{type(err).__name__}: {str(err).strip().splitlines()[0] if str(err).strip() else ''}"
        if device.type == "cpu" and not any(shutil.which(c) for c in ("g++", "c++", "clang++")):
            reason += " (no C++ compiler g++/c++/clang++ on PATH)"
        return reason
    return None


@dataclass
class Case:
    """A model, its batch, ``forward(model, batch)`` and ``loss(output, batch)``."""

    description: str
    model: nn.Module
    batch: Any
    forward: Callable[[nn.Module, Any], Any]
    output_loss: Callable[[Any, Any], torch.Tensor]

    def loss(self, model: nn.Module, batch: Any) -> torch.Tensor:
        return self.output_loss(self.forward(model, batch), batch)

    @property
    def objective(self) -> ceq.Objective:
        return ceq.Objective(self.output_loss, self.forward)


def mse(output: torch.Tensor, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    return F.mse_loss(output, batch[1])


def relaxed_mlp_case(device: torch.device) -> Case:
    torch.manual_seed(0)
    model = RelaxedMLP().to(device)
    generator = torch.Generator().manual_seed(0)
    batch = (torch.randn(500, 16, generator=generator).to(device), torch.randn(500, 3, generator=generator).to(device))
    return Case("RelaxedMLP, batch (500, 16)", model, batch, lambda m, b: m(b[0]), mse)


def egnn_case(device: torch.device) -> Case:
    from constrained_eq._utils.loaders import to_device
    from constrained_eq.data.nbody import NBodyDataset
    from constrained_eq.tasks.nbody import NBody

    temporary_data_cache()
    task = NBody()
    torch.manual_seed(0)
    model = task.model("egnn", **task.model_options["egnn"]).to(device)
    batch = to_device(next(iter(NBodyDataset("train", n_train=100, n_val=1, n_test=1).loader(100))), device)
    return Case("N-body EGNN (hidden 64, 4 layers), batch 100 graphs × 5 nodes", model, batch, task.forward,
                task.loss)


CASES = {"relaxed_mlp": relaxed_mlp_case, "egnn": egnn_case}


def make_solver(model: nn.Module, objective: ceq.Objective, compile: bool = False) -> ceq.Solver:
    problem = ceq.ConstrainedProblem(objective, [ceq.Equality(ceq.gammas)])
    return ceq.Solver(problem, model, "lagrangian", torch.optim.Adam(model.parameters(), lr=1e-3), dual_lr=1e-2,
                      variable_lr=1e-2, check_finite=False, compile=compile)


class PlainStep:
    def __init__(self, model: nn.Module, trained: nn.Module, loss: Callable[[nn.Module, Any], torch.Tensor]) -> None:
        self.model, self.loss = model, loss
        self.optimizer = torch.optim.Adam(trained.parameters(), lr=1e-3)

    def step(self, batch: Any) -> torch.Tensor:
        self.optimizer.zero_grad()
        loss = self.loss(self.model, batch)
        loss.backward()
        self.optimizer.step()
        return loss.detach()


def graph_breaks() -> int:
    from torch._dynamo.utils import counters

    return sum(counters["graph_break"].values())


VARIANTS = ("plain eager", "plain compiled", "hand eager", "solver eager", "solver model", "solver compile")


def make_variants(case: Case) -> dict[str, Any]:
    copies = [copy.deepcopy(case.model) for _ in VARIANTS]
    return {
        "plain eager": PlainStep(copies[0], copies[0], case.loss),
        "plain compiled": PlainStep(torch.compile(copies[1]), copies[1], case.loss),
        "hand eager": HandLoop(copies[2], case.forward, case.output_loss),
        "solver eager": make_solver(copies[3], case.objective),
        "solver model": make_solver(torch.compile(copies[4]), case.objective),
        "solver compile": make_solver(copies[5], case.objective, compile=True),
    }


def first_steps(variants: dict[str, Any], batch: Any) -> dict[str, torch.Tensor]:
    """One step of each variant (compilation happens here, outside the timed region); the losses."""
    first = {}
    for label, variant in variants.items():
        breaks = graph_breaks()
        start = time.perf_counter()
        out = variant.step(batch)
        first[label] = out if isinstance(out, torch.Tensor) else out.loss
        if "eager" not in label:
            out = variant.step(batch)  # a compiled optimizer step compiles again once its state exists
            print(f"  {label}: first two steps (compilation) {time.perf_counter() - start:.1f} s, "
                  f"{graph_breaks() - breaks} graph breaks")
    return first


def run_case(name: str, device: torch.device, steps: int, warmup: int, clock: str = "wall") -> tuple[str, ...]:
    case = CASES[name](device)
    print(f"\nmodel: {name}: {case.description}, {sum(p.numel() for p in case.model.parameters())} parameters")
    variants = make_variants(case)
    first = first_steps(variants, case.batch)
    for label in VARIANTS[1:]:
        torch.testing.assert_close(first[label], first["plain eager"], rtol=1e-4, atol=1e-6)
    print(f"  first-step loss of every variant = plain eager (rtol 1e-4): {first['plain eager']:.6g}")
    timings = interleaved({label: (lambda v=v, b=case.batch: v.step(b)) for label, v in variants.items()},
                          steps, warmup, device, clock)
    ms = {label: t.median * 1e3 for label, t in timings.items()}
    return (name, *(f"{ms[label]:.3f}" for label in VARIANTS),
            f"{ms['plain eager'] / ms['plain compiled']:.3f}", f"{ms['solver eager'] / ms['solver model']:.3f}",
            f"{ms['solver eager'] / ms['solver compile']:.3f}", f"{ms['hand eager'] / ms['solver compile']:.3f}")


def main() -> None:
    extra = argparse.ArgumentParser(add_help=False)
    extra.add_argument("--models", default=",".join(CASES), help="comma-separated subset of " + ", ".join(CASES))
    names = extra.parse_known_args()[0].models.split(",")
    args = parse_args(__doc__.splitlines()[0], steps=100, warmup=10)
    logging.getLogger("torch._dynamo").setLevel(logging.ERROR)  # graph breaks are counted instead
    cache = tempfile.mkdtemp(prefix="ceq_inductor_")  # a cold compile, and nothing left in the user's cache
    atexit.register(shutil.rmtree, cache, ignore_errors=True)
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = cache
    for device in devices(args.device):
        print(f"machine: {machine(device, args.clock)}")
        problem = inductor_problem(device)
        if problem is not None:
            print(f"{device.type}: inductor cannot run here, skipped: {problem}")
            continue
        rows = [run_case(name, device, args.steps, args.warmup, args.clock) for name in names]
        print_table(f"{device.type}: median step over {args.steps} interleaved steps (ms); speedups (eager/compiled)",
                    rows, ("model", *VARIANTS, "plain speedup", "solver: model compiled", "solver: compile=True",
                           "hand eager / solver compile=True"))


if __name__ == "__main__":
    main()
