"""Fairness, a constraint beyond equivariance: demographic parity within a margin on generated data.

    min_w  E[BCE(f_w(x, a), y)]   s.t.   |r_0(w) − r_1(w)| ≤ 0.05,   r_g = E[σ(f_w) | a = g]

The target ``positive_rate_gap`` is the pair (r_0 − r_1, r_1 − r_0), so one ``Inequality`` with bound
0.05 bounds the gap from both sides. Each variant trains the same logistic regression with the public
API (``fit``, 30 epochs, SGD 0.5, dual_lr 0.5). The constraint is measured over whole splits; the table
shows, on the test split, the surrogate gap |r_0 − r_1| (what is constrained) of the last iterate, of the
uniform average of the iterates of the second half of training, and of the model ``fit`` selected (best
validation loss among feasible evaluations, the averaged model a candidate), with that model's error,
hard-decision gap and feasibility verdict (violation ≤ 1e-3). One row per seed, then the mean; the
"over" columns count the seeds whose last iterate / averaged model exceed the bound on the test split.

Run: python examples/fairness.py [n_seeds]   (three runs of 20 epochs per seed, 1–3 min per seed on one CPU core)
"""

from __future__ import annotations

import statistics
import sys

import torch

import constrained_eq as ceq
from constrained_eq.core.solver.split_feasibility import measure
from constrained_eq.run.evaluate import evaluate_split
from constrained_eq.tasks.fairness import Fairness
from constrained_eq.training.loop import fit
from constrained_eq.training.settings import Averaging, Evaluation

EPOCHS, BOUND = 20, 0.05
VARIANTS = [  # name, formulation, options
    ("unconstrained", "none", {}),
    ("lagrangian", "lagrangian", {}),
    ("augmented Lagrangian (c = 1)", "augmented_lagrangian", {"penalty_coefficient": 1.0}),
]


def run(formulation: str, options: dict, seed: int) -> dict[str, float]:
    """Train one variant with iterate averaging on; return test gaps and the selected model's figures."""
    torch.manual_seed(seed)
    task = Fairness()
    loaders = task.loaders(seed=seed, batch_size=200)
    model = task.model("logistic")
    problem = ceq.ConstrainedProblem(ceq.Objective(task.loss, task.forward),
                                     [ceq.Inequality(ceq.positive_rate_gap, bound=BOUND, name="parity")])
    solver = ceq.Solver(problem, model, formulation, torch.optim.SGD(model.parameters(), lr=0.5), dual_lr=0.5,
                        example_batch=loaders.train, **options)
    result = fit(solver, loaders.train, loaders.val, epochs=EPOCHS,
                 test_loader=loaders.test, progress=False,
                 evaluation=Evaluation(evaluate=lambda m, loader: evaluate_split(task, m, loader, equivariance=False)),
                 averaging=Averaging(kind="uniform", start=EPOCHS // 2))

    def gap(m: torch.nn.Module, loader) -> float:
        m.eval()
        return abs(measure(solver, m, loader).values["parity"][0])

    return {"last (train)": gap(model, loaders.train), "averaged (train)": gap(result.averaged, loaders.train),
            "last": gap(model, loaders.test), "averaged": gap(result.averaged, loaders.test),
            "selected": abs(result.test_feasibility["value"]["parity"][0]),
            "error": result.test["error_rate"], "hard": result.test["rate_gap"],
            "feasible": float(result.test_feasibility["feasible"]),
            "picked_average": float(result.candidate == "averaged")}


if __name__ == "__main__":
    seeds = range(int(sys.argv[1]) if len(sys.argv) > 1 else 1)
    columns = ["last (train)", "averaged (train)", "last", "averaged", "selected", "error", "hard", "feasible",
               "picked_average"]
    print(f"{'variant':<30} {'seed':>4} " + " ".join(f"{c:>16}" for c in columns))
    for name, formulation, options in VARIANTS:
        runs = []
        for seed in seeds:
            runs.append(run(formulation, options, seed))
            print(f"{name:<30} {seed:>4} " + " ".join(f"{runs[-1][c]:>16.4f}" for c in columns), flush=True)
        means = {c: statistics.fmean(r[c] for r in runs) for c in columns}
        over = {c: sum(r[c] > BOUND + 1e-3 for r in runs) for c in ("last", "averaged")}
        print(f"{name:<30} {'mean':>4} " + " ".join(f"{means[c]:>16.4f}" for c in columns)
              + f"   over the bound on test: last {over['last']}/{len(runs)}, averaged {over['averaged']}/{len(runs)}",
              flush=True)
