"""Cooper parity: Cooper's convex test family through ``ceq.Solver`` and through Cooper directly.

min ‖x‖² s.t. Ax ≤ b (inequality), Cx = d (equality) or both (mixed: 3 + 2 rows of one generated
matrix), from Cooper's generator and step sizes (x⁰ = 1, primal SGD 3e-2, dual SGD 0.2/√n, 2,000
steps; the augmented Lagrangian grows c by 1 + 2.5e-4 above a 1e-4 violation). Each run asserts:

* bitwise equality of x and every multiplier with the same problem written in Cooper, at every step;
* the KKT point of an exact active-set solve (:func:`constrained_eq.testing.toy_problems.norm_kkt_point`) to 1e-4;
* that ``solver.feasibility()`` never calls a constraint of these feasible problems infeasible.

The fast subset runs in CI; the whole grid (seeds × sizes × kinds × formulations × schemes, one
and two primal optimizers) is marked ``slow``.
"""

import itertools
import math

import cooper
import pytest
import torch

import constrained_eq as ceq
from constrained_eq.core.solver.feasibility import INFEASIBLE
from constrained_eq.testing.toy_problems import linear_constraints, norm_kkt_point

STEPS, PRIMAL_LR, DUAL_LR = 2000, 3e-2, 2e-1
GROWTH, TOLERANCE = 1.0 + 2.5e-4, 1e-4
SCHEMES = {
    "simultaneous": cooper.optim.SimultaneousOptimizer,
    "alternating_primal_dual": cooper.optim.AlternatingPrimalDualOptimizer,
    "alternating_dual_primal": cooper.optim.AlternatingDualPrimalOptimizer,
    "extrapolation": cooper.optim.ExtrapolationConstrainedOptimizer,
}
FORMULATIONS = {"lagrangian": cooper.formulations.Lagrangian,
                "augmented_lagrangian": cooper.formulations.AugmentedLagrangian}


def _rows(kind, n, seed):
    lhs, rhs = linear_constraints(n, 5, seed)
    if kind == "inequality":
        return lhs, rhs, None, None
    if kind == "equality":
        return None, None, lhs, rhs
    return lhs[:3], rhs[:3], lhs[3:], rhs[3:]


class _Blocks(torch.nn.Module):
    """x split into blocks, one per primal optimizer (Cooper's test splits x in two)."""

    def __init__(self, n, blocks):
        super().__init__()
        self.blocks = torch.nn.ParameterList([torch.nn.Parameter(t.clone()) for t in torch.ones(n).tensor_split(blocks)])

    def forward(self, batch=None):
        return self.blocks[0] if len(self.blocks) == 1 else torch.cat(list(self.blocks))


def _primal_optimizers(params, extrapolation):
    sgd, adam = (cooper.optim.ExtraSGD, cooper.optim.ExtraAdam) if extrapolation else (torch.optim.SGD, torch.optim.Adam)
    optimizers = [sgd([params[0]], lr=PRIMAL_LR)]
    if len(params) > 1:
        optimizers.append(adam([params[1]], lr=10 * PRIMAL_LR, betas=(0.0, 0.0), eps=10.0))
    return optimizers


class _CooperCMP(cooper.ConstrainedMinimizationProblem):
    """The same problem written in Cooper directly (as Cooper's own tests write it)."""

    def __init__(self, rows, formulation):
        super().__init__()
        self.rows = rows
        for name, (lhs, rhs, kind) in zip(("ineq", "eq"), ((rows[0], rows[1], cooper.ConstraintType.INEQUALITY),
                                                           (rows[2], rows[3], cooper.ConstraintType.EQUALITY)),
                                          strict=True):
            if lhs is None:
                continue
            coefficient = None
            if formulation is cooper.formulations.AugmentedLagrangian:
                coefficient = cooper.penalty_coefficients.DensePenaltyCoefficient(init=torch.ones(rhs.numel()))
            setattr(self, name, cooper.Constraint(  # Cooper registers a Constraint attribute as a constraint
                kind, formulation, multiplier=cooper.multipliers.DenseMultiplier(num_constraints=rhs.numel()),
                penalty_coefficient=coefficient))

    def compute_violations(self, model):
        # x is read from the model at each evaluation (the extrapolation scheme evaluates twice per step)
        observed = {}
        for name, lhs, rhs in (("ineq", self.rows[0], self.rows[1]), ("eq", self.rows[2], self.rows[3])):
            if lhs is not None:
                observed[getattr(self, name)] = cooper.ConstraintState(violation=torch.matmul(lhs, model()) - rhs)
        return cooper.CMPState(observed_constraints=observed)

    def compute_cmp_state(self, model):
        # The loss first, then the constraints: the order the Solver evaluates them in, so that autograd
        # accumulates x's gradient in the same order (a different order changes the last bit).
        loss = torch.sum(model() ** 2)
        return cooper.CMPState(loss=loss, observed_constraints=self.compute_violations(model).observed_constraints)


def _cooper_run(rows, n, formulation, scheme, blocks):
    model = _Blocks(n, blocks)
    cmp = _CooperCMP(rows, FORMULATIONS[formulation])
    extrapolation = scheme == "extrapolation"
    dual_cls = cooper.optim.ExtraSGD if extrapolation else torch.optim.SGD
    dual = dual_cls(cmp.dual_parameters(), lr=DUAL_LR / math.sqrt(n), maximize=True)
    optimizer = SCHEMES[scheme](cmp=cmp, primal_optimizers=_primal_optimizers(list(model.blocks), extrapolation),
                                dual_optimizers=dual)
    updater = (cooper.penalty_coefficients.MultiplicativePenaltyCoefficientUpdater(GROWTH, TOLERANCE)
               if formulation == "augmented_lagrangian" else None)

    def step():
        kwargs = {"compute_cmp_state_kwargs": {"model": model}}
        if scheme == "alternating_primal_dual":
            kwargs["compute_violations_kwargs"] = {"model": model}
        rollout = optimizer.roll(**kwargs)
        if updater is not None:
            updater.step(rollout.cmp_state.observed_constraints)
        return model().detach(), {k: m.weight.detach() for k, m in cmp.named_multipliers()}

    return step


def _solver(rows, n, formulation, scheme, blocks):
    model = _Blocks(n, blocks)
    constraints = []
    for name, lhs, rhs, kind in (("ineq", rows[0], rows[1], ceq.Inequality), ("eq", rows[2], rows[3], ceq.Equality)):
        if lhs is None:
            continue
        target = ceq.Target(lambda m, batch, out, lhs=lhs: torch.matmul(lhs, m()), f"{name} rows @ x",
                            needs_batch=False)
        side = {"bound": rhs.tolist()} if kind is ceq.Inequality else {"value": rhs.tolist()}
        constraints.append(kind(target, name=name, **side))
    problem = ceq.ConstrainedProblem(lambda out, batch: torch.sum(out**2), constraints)
    options = {}
    if formulation == "augmented_lagrangian":
        options = {"penalty_coefficient": 1.0, "penalty_updater": {"name": "multiplicative", "growth_factor": GROWTH,
                                                                   "violation_tolerance": TOLERANCE}}
    optimizers = _primal_optimizers(list(model.blocks), scheme == "extrapolation")
    solver = ceq.Solver(problem, model, formulation, optimizers if blocks > 1 else optimizers[0],
                        DUAL_LR / math.sqrt(n), constrained_optimizer=scheme, **options)
    return solver, model


def _check(seed, n, kind, formulation, scheme, blocks=1):
    rows = _rows(kind, n, seed)
    solver, model = _solver(rows, n, formulation, scheme, blocks)
    cooper_step = _cooper_run(rows, n, formulation, scheme, blocks)
    for step in range(STEPS):
        record = solver.step()
        x_cooper, multipliers_cooper = cooper_step()
        assert torch.equal(model().detach(), x_cooper), f"x differs from Cooper's at step {step}"
        for key, value in multipliers_cooper.items():
            assert torch.equal(record.multipliers[key], value), f"λ of {key!r} differs from Cooper's at step {step}"
        if step % 256 == 255:
            verdicts = solver.feasibility()
            assert all(v.verdict != INFEASIBLE for v in verdicts.values()), (step, verdicts)
    x_star, mu_star, lam_star = norm_kkt_point(*(None if r is None else r.numpy() for r in rows))
    torch.testing.assert_close(model().detach().double(), torch.from_numpy(x_star), atol=1e-4, rtol=0)
    if rows[0] is not None:
        torch.testing.assert_close(record.multipliers["ineq"].double(), torch.from_numpy(mu_star), atol=1e-4, rtol=0)
    if rows[2] is not None:
        torch.testing.assert_close(record.multipliers["eq"].double(), torch.from_numpy(lam_star), atol=1e-4, rtol=0)


FAST = [
    (0, 5, "inequality", "lagrangian", "simultaneous", 1),
    (1, 10, "equality", "augmented_lagrangian", "alternating_dual_primal", 1),
    (0, 10, "mixed", "lagrangian", "extrapolation", 2),
]


@pytest.mark.parametrize(("seed", "n", "kind", "formulation", "scheme", "blocks"), FAST)
def test_cooper_family_fast_subset(seed, n, kind, formulation, scheme, blocks):
    _check(seed, n, kind, formulation, scheme, blocks)


GRID = [c for c in itertools.product(range(5), (5, 10), ("inequality", "equality", "mixed"), tuple(FORMULATIONS),
                                     tuple(SCHEMES), (1, 2)) if c not in FAST]


@pytest.mark.slow
@pytest.mark.parametrize(("seed", "n", "kind", "formulation", "scheme", "blocks"), GRID)
def test_cooper_family_grid(seed, n, kind, formulation, scheme, blocks):
    _check(seed, n, kind, formulation, scheme, blocks)


def test_the_reference_solve_meets_the_kkt_conditions():
    a, b = linear_constraints(5, 5, 3)
    x, mu, _ = norm_kkt_point(a.double().numpy(), b.double().numpy())
    a, b, x, mu = (torch.as_tensor(v, dtype=torch.float64) for v in (a, b, x, mu))
    assert (a @ x <= b + 1e-10).all() and (mu >= 0).all()
    torch.testing.assert_close(2 * x + a.T @ mu, torch.zeros(5, dtype=torch.float64), atol=1e-12, rtol=0)
    torch.testing.assert_close(mu * (a @ x - b), torch.zeros(5, dtype=torch.float64), atol=1e-12, rtol=0)
