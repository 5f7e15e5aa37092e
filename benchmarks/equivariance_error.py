"""Batched ``equivariance_error`` (n group samples in one forward) vs a loop of n forwards.

:func:`constrained_eq.symmetry.equivariance_error` draws n group elements, stacks the n·B
transformed inputs and runs the model **once**; the loop below runs it n times on B inputs, with
the same group elements and the same maths (f(x) once, per-sample norm of ρ_Y(g) f(x) − f(ρ_X(g) x),
mean over samples and elements). Both are first checked to give the same value in float64, then
timed (float32, ``torch.no_grad``: the evaluation use) in interleaved rounds.

Models:

* ``egnn``: the N-body EGNN as the ``nbody`` task builds it (``EGNN_vel``, hidden 64, 4 layers,
  relaxed with γ = 1, so the error is not zero) on one batch of 100 simulated 5-body graphs. The
  model is called through ``NBody.forward`` on graphs rebuilt from ``x`` of shape ``(graphs, 5, 6)``
  (positions and velocities), acted on by ``VectorRep(2)``, i.e. ``loc Rᵀ, vel Rᵀ``: the rotation of
  ``NBody.equivariance_error`` (checked below); the predicted positions by ``VectorRep(1)``.
* ``vn_mlp``: a small relaxed Vector-Neuron MLP (8 → 32 → 32 → 4 vector channels, VN-LeakyReLU,
  every ``VNLinear`` relaxed) on 256 inputs of shape ``(8, 3)``, ``VectorRep(8)`` in, ``VectorRep(4)`` out.

Run::

    PYTHONPATH=. python benchmarks/equivariance_error.py --steps 30 --threads 1
"""

from __future__ import annotations

import argparse

import torch
from torch import nn

import constrained_eq as ceq
from benchmarks._common import devices, interleaved, machine, parse_args, print_table, temporary_data_cache
from constrained_eq.data.nbody import NBodyBatch, NBodyDataset, fully_connected_edges
from constrained_eq.models import VNLinear
from constrained_eq.models._vn import VNLinearLeakyReLU
from constrained_eq.symmetry import SO, VectorRep, act, equivariance_error
from constrained_eq.symmetry.haar import random_rotation
from constrained_eq.symmetry.metrics import resolve_action
from constrained_eq.tasks.nbody import NBody

SAMPLES = (1, 5, 25)
GROUP = SO(3)


def looped_error(model, x: torch.Tensor, n: int, act_in, act_out, generator: torch.Generator) -> torch.Tensor:
    """``equivariance_error`` with one forward per group element instead of one stacked forward."""
    rho_in, rho_out = resolve_action(act_in, "act_in"), resolve_action(act_out, "act_out")
    g = GROUP.sample(n, generator=generator, dtype=x.dtype, device=x.device)
    fx = model(x)
    errors = []
    for i in range(n):
        gi = g[i : i + 1]
        diff = rho_out(gi, fx)[0] - model(rho_in(gi, x)[0])
        errors.append(diff.reshape(x.shape[0], -1).norm(dim=-1))
    return torch.stack(errors).mean()


class NBodyGraphs:
    """``x (graphs, N, 6)`` → predicted positions ``(graphs, N, 3)`` through ``NBody.forward``.

    The charges of the B graphs of the batch are tiled over the stacked copies (copy k of graph b
    is graph ``k·B + b``, the order of ``equivariance_error``'s reshape); edges and graph indices are
    built once per number of graphs, so neither variant pays for them.
    """

    def __init__(self, task: NBody, model: nn.Module, charges: torch.Tensor) -> None:
        self.task, self.model, self.charges = task, model, charges  # charges (B, N, 1)
        self._graphs: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        graphs, nodes = x.shape[:2]
        if graphs not in self._graphs:
            self._graphs[graphs] = (fully_connected_edges(graphs, nodes, x.device),
                                    torch.arange(graphs, device=x.device).repeat_interleave(nodes))
        edges, index = self._graphs[graphs]
        charges = self.charges.repeat(graphs // self.charges.shape[0], 1, 1).reshape(-1, 1)
        flat = x.reshape(graphs * nodes, 6)
        batch = NBodyBatch(flat[:, :3], flat[:, 3:], charges, None, edges, index, graphs)  # target: not read
        return self.task.forward(self.model, batch).reshape(graphs, nodes, 3)


def egnn_case(device: torch.device, dtype: torch.dtype):
    """(callable model, x, act_in, act_out) for the N-body EGNN on one simulated batch of 100 graphs."""
    task = NBody(n_train=100, n_val=1, n_test=1)
    torch.manual_seed(0)
    model = task.model("egnn", **task.model_options["egnn"]).to(device, dtype).eval()
    batch = next(iter(NBodyDataset("train", n_train=100, n_val=1, n_test=1, dtype=dtype).loader(100)))
    graphs = batch.num_graphs
    x = torch.cat([batch.loc, batch.vel], dim=-1).reshape(graphs, -1, 6).to(device)
    f = NBodyGraphs(task, model, batch.charges.reshape(graphs, -1, 1).to(device))
    # VectorRep(2) on [loc, vel] is the nbody task's rotation (loc Rᵀ, vel Rᵀ)
    rotation = random_rotation(torch.Generator().manual_seed(1), dtype, device)
    turned = act(VectorRep(2), rotation[None], x)[0].reshape(-1, 6)
    torch.testing.assert_close(turned, torch.cat([batch.loc.to(device) @ rotation.T,
                                                  batch.vel.to(device) @ rotation.T], dim=-1))
    return f, x, VectorRep(2), VectorRep(1)


def vn_mlp_case(device: torch.device, dtype: torch.dtype):
    """(model, x, act_in, act_out) for a small relaxed VN MLP on 256 inputs of 8 vectors."""
    torch.manual_seed(0)
    net = nn.Sequential(VNLinearLeakyReLU(8, 32), VNLinearLeakyReLU(32, 32), VNLinear(32, 4))
    model = ceq.relax(net).to(device, dtype).eval()
    x = torch.randn(256, 8, 3, generator=torch.Generator().manual_seed(0), dtype=dtype).to(device)
    return model, x, VectorRep(8), VectorRep(4)


CASES = {"egnn": egnn_case, "vn_mlp": vn_mlp_case}


def generator_on(device: torch.device, seed: int = 0) -> torch.Generator:
    return torch.Generator(device=device).manual_seed(seed)


@torch.no_grad()
def check_same_value(name: str, device: torch.device, n: int) -> tuple[float, float]:
    """Both variants in float64 with the same group elements; return (error, |batched − loop|)."""
    f, x, act_in, act_out = CASES[name](device, torch.float64)
    batched = equivariance_error(f, x, GROUP, n, act_in=act_in, act_out=act_out, generator=generator_on(device))
    looped = looped_error(f, x, n, act_in, act_out, generator_on(device))
    torch.testing.assert_close(batched, looped, rtol=1e-10, atol=1e-12)
    return float(batched), abs(float(batched - looped))


def variants(f, x: torch.Tensor, n: int, act_in, act_out, device: torch.device) -> dict:
    """The two timed calls, each with a fresh generator of the same seed (same group elements)."""

    @torch.no_grad()
    def batched():
        return equivariance_error(f, x, GROUP, n, act_in=act_in, act_out=act_out, generator=generator_on(device))

    @torch.no_grad()
    def looped():
        return looped_error(f, x, n, act_in, act_out, generator_on(device))

    return {"batched": batched, "loop": looped}


def main() -> None:
    extra = argparse.ArgumentParser(add_help=False)
    extra.add_argument("--models", default=",".join(CASES), help="comma-separated subset of " + ", ".join(CASES))
    names = extra.parse_known_args()[0].models.split(",")
    args = parse_args(__doc__.splitlines()[0], steps=30, warmup=3)
    temporary_data_cache()
    for device in devices(args.device):
        print(f"machine: {machine(device, args.clock)}")
        rows = []
        for name in names:
            f, x, act_in, act_out = CASES[name](device, torch.float32)
            for n in SAMPLES:
                value, gap = check_same_value(name, device, n)
                print(f"{name}, n={n}: error {value:.4g} batched = loop in float64 (|Δ| = {gap:.1e})")

                timings = interleaved(variants(f, x, n, act_in, act_out, device), args.steps, args.warmup, device,
                                      args.clock)
                b, lp = timings["batched"].median, timings["loop"].median
                rows.append((name, str(tuple(x.shape)), str(n), f"{b * 1e3:.2f}", f"{lp * 1e3:.2f}", f"{lp / b:.2f}"))
        print_table(f"{device.type}: median over {args.steps} interleaved calls (ms), torch.no_grad", rows,
                    ("model", "x", "n", "batched", "loop", "loop/batched"))


if __name__ == "__main__":
    main()
