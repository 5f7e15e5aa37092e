"""``torch.compile(model)`` (default inductor backend) inside a ``Solver`` vs eager, and without one.

Four variants of one training step on copies of the same model and batch, timed in interleaved
rounds:

* ``plain eager`` / ``plain compiled``: forward, loss, backward, Adam on all parameters;
* ``solver eager`` / ``solver compiled``: ``Solver.step`` (ACE: ``lagrangian`` on
  ``Equality(gammas)``, SGD on γ, ``check_finite=False``) with the model, or ``torch.compile(model)``,
  handed to the Solver.

Compilation happens in a warm-up step per compiled variant, outside the timed region; its wall
time, the graph breaks dynamo reported and the warm-up loss against eager (same initial weights)
are printed. Inductor's on-disk cache is pointed at a temporary folder, so the first compile is a
cold one; the second compiled copy of a model reuses dynamo's graphs (same code, parameters are
graph inputs), so its first step is short.

Models: ``relaxed_mlp`` (:class:`RelaxedMLP`, batch 500 × 16) and ``egnn`` (the N-body EGNN as the
``nbody`` task builds it, one batch of 100 simulated 5-body graphs).

Inductor needs a C++ compiler on CPU (Triton on CUDA); the script first compiles a tiny function
on each device and, if that fails, prints why and skips the device.

Run::

    PYTHONPATH=. python benchmarks/compile.py --steps 100 --threads 1
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
    """A model, its batch, its loss ``(model, batch) -> Tensor`` and the Objective a Solver uses."""

    description: str
    model: nn.Module
    batch: Any
    loss: Callable[[nn.Module, Any], torch.Tensor]
    objective: ceq.Objective


def relaxed_mlp_case(device: torch.device) -> Case:
    torch.manual_seed(0)
    model = RelaxedMLP().to(device)
    generator = torch.Generator().manual_seed(0)
    batch = (torch.randn(500, 16, generator=generator).to(device), torch.randn(500, 3, generator=generator).to(device))
    objective = ceq.Objective(lambda out, b: F.mse_loss(out, b[1]))
    return Case("RelaxedMLP, batch (500, 16)", model, batch, lambda m, b: F.mse_loss(m(b[0]), b[1]), objective)


def egnn_case(device: torch.device) -> Case:
    from constrained_eq.data.nbody import NBodyDataset
    from constrained_eq.run.train import to_device
    from constrained_eq.tasks.nbody import NBody

    temporary_data_cache()
    task = NBody()
    torch.manual_seed(0)
    model = task.model("egnn", **task.model_options["egnn"]).to(device)
    batch = to_device(next(iter(NBodyDataset("train", n_train=100, n_val=1, n_test=1).loader(100))), device)
    return Case("N-body EGNN (hidden 64, 4 layers), batch 100 graphs × 5 nodes", model, batch,
                lambda m, b: task.loss(task.forward(m, b), b), ceq.Objective(task.loss, task.forward))


CASES = {"relaxed_mlp": relaxed_mlp_case, "egnn": egnn_case}


def make_solver(model: nn.Module, objective: ceq.Objective) -> ceq.Solver:
    problem = ceq.ConstrainedProblem(objective, [ceq.Equality(ceq.gammas)])
    return ceq.Solver(problem, model, "lagrangian", torch.optim.Adam(model.parameters(), lr=1e-3), dual_lr=1e-2,
                      variable_lr=1e-2, check_finite=False)


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


def run_case(name: str, device: torch.device, steps: int, warmup: int) -> tuple[str, ...]:
    case = CASES[name](device)
    print(f"\nmodel: {name}: {case.description}, {sum(p.numel() for p in case.model.parameters())} parameters")
    copies = [copy.deepcopy(case.model) for _ in range(4)]
    variants = {
        "plain eager": PlainStep(copies[0], copies[0], case.loss),
        "plain compiled": PlainStep(torch.compile(copies[1]), copies[1], case.loss),
        "solver eager": make_solver(copies[2], case.objective),
        "solver compiled": make_solver(torch.compile(copies[3]), case.objective),
    }
    first = {}
    for label, variant in variants.items():  # compile here, outside the timed region
        breaks = graph_breaks()
        start = time.perf_counter()
        out = variant.step(case.batch)
        first[label] = out if isinstance(out, torch.Tensor) else out.loss
        if "compiled" in label:
            print(f"  {label}: first step (compilation) {time.perf_counter() - start:.1f} s, "
                  f"{graph_breaks() - breaks} graph breaks")
    for kind in ("plain", "solver"):
        torch.testing.assert_close(first[f"{kind} compiled"], first[f"{kind} eager"], rtol=1e-4, atol=1e-6)
    print(f"  warm-up loss compiled = eager (rtol 1e-4): plain {first['plain eager']:.6g}, "
          f"solver {first['solver eager']:.6g}")
    timings = interleaved({label: (lambda v=v, b=case.batch: v.step(b)) for label, v in variants.items()},
                          steps, warmup, device)
    ms = {label: t.median * 1e3 for label, t in timings.items()}
    return (name, f"{ms['plain eager']:.3f}", f"{ms['plain compiled']:.3f}",
            f"{ms['plain compiled'] / ms['plain eager']:.3f}", f"{ms['solver eager']:.3f}",
            f"{ms['solver compiled']:.3f}", f"{ms['solver compiled'] / ms['solver eager']:.3f}",
            f"{ms['solver eager'] / ms['plain eager']:.3f}", f"{ms['solver compiled'] / ms['plain compiled']:.3f}")


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
        print(f"machine: {machine(device)}")
        problem = inductor_problem(device)
        if problem is not None:
            print(f"{device.type}: inductor cannot run here, skipped: {problem}")
            continue
        rows = [run_case(name, device, args.steps, args.warmup) for name in names]
        print_table(f"{device.type}: median step over {args.steps} interleaved steps (ms); ratios compiled/eager "
                    "and Solver/plain", rows,
                    ("model", "plain eager", "plain compiled", "ratio", "solver eager", "solver compiled", "ratio",
                     "solver/plain eager", "solver/plain compiled"))


if __name__ == "__main__":
    main()
