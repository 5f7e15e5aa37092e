"""``Solver.step`` vs a hand-written ACE Alg. 1 loop vs the same problem written in Cooper.

All three train the same relaxed model (:class:`RelaxedMLP`, EGNN-sized) on the same batch with
the same update law

    θ ← Adam(∇_θ (J_0 + λᵀγ)),   γ ← γ − η_p ∇_γ (J_0 + λᵀγ),   λ ← λ + η_d γ_old,

and are first checked to reach the same parameters after a few steps (so the timing is fair).
Then one step of each is timed in interleaved rounds and the medians are compared.

Models (``--model``): ``relaxed_mlp`` (default; 200k parameters, random batch of 500 × 16) or
``egnn``, the N-body EGNN of ``problems/nbody_full.yaml`` on one batch of 100 simulated 5-body graphs
(its forward and loss are the nbody task's).

Run::

    PYTHONPATH=. python benchmarks/engine_vs_hand.py --steps 300
    PYTHONPATH=. python benchmarks/engine_vs_hand.py --steps 200 --model egnn
"""

from __future__ import annotations

import copy

import cooper
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

LR, ETA_P, ETA_D = 1e-3, 1e-2, 1e-2
TARGETS = {"relaxed_mlp": 1.01, "egnn": 1.005}  # Solver / hand-written loop


def mlp_forward(model: torch.nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    return model(batch[0])


def mse(output: torch.Tensor, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    return F.mse_loss(output, batch[1])


def _split(model: torch.nn.Module) -> tuple[list[torch.nn.Parameter], list[torch.nn.Parameter]]:
    gammas = [layer.gamma for layer in ceq.homotopy.homotopic_layers(model)]
    ids = {id(g) for g in gammas}
    return [p for p in model.parameters() if id(p) not in ids], gammas


class HandLoop:
    """ACE Alg. 1 in raw PyTorch: Adam on θ, plain SGD on γ, λ += η_d γ_old under no_grad."""

    def __init__(self, model: torch.nn.Module, forward=mlp_forward, loss=mse) -> None:
        self.model, self.forward, self.loss = model, forward, loss
        theta, self.gammas = _split(model)
        self.primal = torch.optim.Adam(theta, lr=LR)
        self.variables = torch.optim.SGD(self.gammas, lr=ETA_P)
        self.lam = torch.zeros(len(self.gammas), device=self.gammas[0].device, dtype=self.gammas[0].dtype)

    def step(self, batch) -> torch.Tensor:
        self.primal.zero_grad()
        self.variables.zero_grad()
        gamma = torch.stack(self.gammas)
        loss = self.loss(self.forward(self.model, batch), batch)
        lagrangian = loss + (self.lam * gamma).sum()
        lagrangian.backward()
        gamma_old = gamma.detach()
        self.primal.step()
        self.variables.step()
        with torch.no_grad():
            self.lam.add_(gamma_old, alpha=ETA_D)
        return loss.detach()


class CooperProblem(cooper.ConstrainedMinimizationProblem):
    """The same problem written directly as a Cooper CMP (one dense multiplier on γ = 0).

    Like the hand-written loop it holds the list of γ, collected once.
    """

    def __init__(self, gammas: list[torch.nn.Parameter], forward=mlp_forward, loss=mse) -> None:
        super().__init__()
        self.gammas, self.forward, self.loss = gammas, forward, loss
        self.constraint = cooper.Constraint(
            cooper.ConstraintType.EQUALITY, cooper.formulations.Lagrangian,
            multiplier=cooper.multipliers.DenseMultiplier(num_constraints=len(gammas), device=gammas[0].device,
                                                          dtype=gammas[0].dtype),
        )

    def compute_cmp_state(self, model: torch.nn.Module, batch) -> cooper.CMPState:
        loss = self.loss(self.forward(model, batch), batch)
        gamma = torch.stack(self.gammas)
        state = cooper.ConstraintState(violation=gamma)
        return cooper.CMPState(loss=loss, observed_constraints={self.constraint: state})


class CooperLoop:
    def __init__(self, model: torch.nn.Module, forward=mlp_forward, loss=mse) -> None:
        self.model = model
        theta, gammas = _split(model)
        self.cmp = CooperProblem(gammas, forward, loss)
        self.optimizer = cooper.optim.SimultaneousOptimizer(
            self.cmp,
            [torch.optim.Adam(theta, lr=LR), torch.optim.SGD(gammas, lr=ETA_P)],
            torch.optim.SGD(self.cmp.dual_parameters(), lr=ETA_D, maximize=True),
        )

    def step(self, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        return self.optimizer.roll(compute_cmp_state_kwargs={"model": self.model, "batch": batch}).loss

    @property
    def lam(self) -> torch.Tensor:
        return self.cmp.constraint.multiplier.weight.detach()


def make_solver(model: torch.nn.Module, forward=mlp_forward, loss=mse) -> ceq.Solver:
    problem = ceq.ConstrainedProblem(ceq.Objective(loss, forward), [ceq.Equality(ceq.gammas)])
    return ceq.Solver(problem, model, "lagrangian", torch.optim.Adam(model.parameters(), lr=LR), dual_lr=ETA_D,
                      variable_lr=ETA_P, check_finite=False)


def _double(batch):
    """The batch with its floating tensors in float64 (tuples and named tuples keep their type)."""
    items = [t.double() if isinstance(t, torch.Tensor) and t.is_floating_point() else t for t in batch]
    return type(batch)(*items) if hasattr(batch, "_fields") else type(batch)(items)


def check_same_trajectory(base: torch.nn.Module, batch, forward, loss, steps: int = 10) -> float:
    """Run the three loops from the same init for ``steps`` steps (float64); return the max |Δθ|, |Δλ|."""
    base, batch = copy.deepcopy(base).double(), _double(batch)
    hand, coop = HandLoop(copy.deepcopy(base), forward, loss), CooperLoop(copy.deepcopy(base), forward, loss)
    eng = make_solver(copy.deepcopy(base), forward, loss)
    for _ in range(steps):
        hand.step(batch), coop.step(batch)
        record = eng.step(batch)
    worst = 0.0
    for other in (coop.model, eng.model):
        for a, b in zip(hand.model.parameters(), other.parameters(), strict=True):
            torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
            worst = max(worst, (a - b).abs().max().item())
    for lam in (coop.lam, record.multipliers["equality_gammas"]):
        torch.testing.assert_close(hand.lam, lam, rtol=1e-10, atol=1e-12)
        worst = max(worst, (hand.lam - lam).abs().max().item())
    return worst


def relaxed_mlp(device: torch.device):
    """RelaxedMLP (200k parameters, 4 γ) on a random batch of 500 × 16 (100 graphs × 5 nodes)."""
    torch.manual_seed(0)
    base = RelaxedMLP().to(device)
    generator = torch.Generator().manual_seed(0)
    batch = (torch.randn(500, 16, generator=generator).to(device), torch.randn(500, 3, generator=generator).to(device))
    return base, batch, mlp_forward, mse, f"batch {tuple(batch[0].shape)}"


def egnn(device: torch.device):
    """The N-body EGNN of problems/nbody_full.yaml, with the nbody task's forward and loss."""
    from constrained_eq._utils.loaders import to_device
    from constrained_eq.run.build import build

    temporary_data_cache()
    built = build(nbody_spec("ace_equality", "egnn"), device)
    batch = to_device(next(iter(built.train_loader)), device)
    return (built.model, batch, built.task.forward, built.task.loss,
            f"batch {batch.num_graphs} graphs × {batch.loc.shape[0] // batch.num_graphs} nodes")


MODELS = {"relaxed_mlp": relaxed_mlp, "egnn": egnn}


def main() -> None:
    import argparse

    extra = argparse.ArgumentParser(add_help=False)
    extra.add_argument("--model", default="relaxed_mlp", choices=sorted(MODELS))
    model_name = extra.parse_known_args()[0].model
    args = parse_args(__doc__.splitlines()[0], steps=300, warmup=30)
    for device in devices(args.device):
        print(f"machine: {machine(device, args.clock)}")
        base, batch, forward, loss, described = MODELS[model_name](device)
        worst = check_same_trajectory(base, batch, forward, loss)
        print(f"same parameters and λ after 10 float64 steps (hand, Cooper, Solver): max |Δ| = {worst:.1e}")
        print(f"model: {type(base).__name__}, {sum(p.numel() for p in base.parameters())} parameters, "
              f"{len(list(ceq.homotopy.homotopic_layers(base)))} γ; {described}")
        loops = {"hand": HandLoop(copy.deepcopy(base), forward, loss),
                 "cooper": CooperLoop(copy.deepcopy(base), forward, loss),
                 "solver": make_solver(copy.deepcopy(base), forward, loss)}
        timings = interleaved({name: (lambda loop=loop, batch=batch: loop.step(batch)) for name, loop in loops.items()},
                              args.steps, args.warmup, device, args.clock)
        ref = timings["hand"].median
        rows = [(name, f"{t.median * 1e3:.3f}", f"{t.median / ref:.3f}") for name, t in timings.items()]
        print_table(f"{device.type}: median step over {args.steps} interleaved steps", rows,
                    ("variant", "ms/step", "ratio vs hand"))
        ratio = timings["solver"].median / ref
        target = TARGETS[model_name]
        print(f"\nSolver/hand = {ratio:.3f} (target ≤ {target}): {'OK' if ratio <= target else 'ABOVE TARGET'}")
        print(f"Solver/Cooper = {timings['solver'].median / timings['cooper'].median:.3f}")


if __name__ == "__main__":
    main()
