"""A constrained problem with a closed-form answer, solved by name under four formulations.

    min_x ½‖x − a‖²  s.t.  x_0 = 0,  x_3 ≤ 0.2

The KKT point is x* = (0, a_1, a_2, min(a_3, 0.2)) with multipliers λ* = a_0 and μ* = [a_3 − 0.2]₊.
Run: python examples/constrained_toy.py   (about 2 s on a CPU)
"""

import torch

import constrained_eq as ceq
from constrained_eq.testing.toy_problems import VectorModel, projection_problem, projection_solution

torch.set_default_dtype(torch.float64)
a = torch.tensor([1.0, -2.0, 0.5, 3.0])
b = torch.tensor([0.2])
problem = projection_problem(a, eq_idx=[0], ineq_idx=[3], b=b)
x_star, lam_star, mu_star = projection_solution(a, [0], [3], b)
print(problem)
print(f"closed form: x* = {x_star.tolist()}, λ* = {lam_star.tolist()}, μ* = {mu_star.tolist()}\n")

# (a quadratic penalty of coefficient c needs a primal step below 2/(1 + c) to stay stable)
for formulation, lr, options in [("lagrangian", 0.3, {}), ("augmented_lagrangian", 0.3, {"penalty_coefficient": 1.0}),
                                 ("resilient", 0.3, {"rho": 1.0}), ("penalty", 0.1, {"coefficient": 10.0})]:
    model = VectorModel(4)
    solver = ceq.Solver(problem, model, formulation, torch.optim.SGD(model.parameters(), lr=lr), dual_lr=0.3,
                        **options)
    for _ in range(800):
        record = solver.step(batch=None)
    x = [round(v, 4) for v in model.x.tolist()]
    duals = {k: [round(v, 4) for v in m.tolist()] for k, m in record.multipliers.items()}
    slacks = {k: [round(v, 4) for v in u.tolist()] for k, u in record.slacks.items()}
    print(f"{formulation:>22}: x = {x}  multipliers = {duals}  slacks = {slacks}")
