"""nuPI multipliers by name: Cooper's update law exactly, and the damping of the γ = 0 oscillation."""

import cooper
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import constrained_eq as ceq
from constrained_eq.testing.toy_problems import VectorModel, projection_problem, projection_solution


def _solver(model, problem, dual_optimizer, eta_p=0.1, eta_d=0.1):
    return ceq.Solver(problem, model, "lagrangian", torch.optim.SGD(model.parameters(), lr=eta_p), dual_lr=eta_d,
                      dual_optimizer=dual_optimizer)


@settings(max_examples=15, deadline=None)
@given(kappa_p=st.floats(0.0, 30.0), kappa_i=st.floats(0.1, 3.0), ema_nu=st.floats(0.0, 0.9),
       a=st.lists(st.floats(-2.0, 2.0), min_size=3, max_size=3))
def test_solver_nupi_is_coopers_nupi_step_for_step(kappa_p, kappa_i, ema_nu, a):
    a = torch.tensor(a, dtype=torch.float64)
    model = VectorModel(3, init=torch.ones(3, dtype=torch.float64))
    solver = _solver(model, projection_problem(a, [0, 1, 2], [], torch.zeros(0)),
                     ceq.NuPI(kappa_p=kappa_p, kappa_i=kappa_i, ema_nu=ema_nu))
    assert isinstance(solver.optimizer.dual_optimizers[0], cooper.optim.nuPI)
    # the reference: Cooper's nuPI on a bare tensor, fed the violation h_t = x_t the Solver saw
    lam = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    reference = cooper.optim.nuPI([lam], lr=0.1, Kp=kappa_p, Ki=kappa_i, ema_nu=ema_nu, maximize=True)
    for _ in range(12):
        violation = model.x.detach().clone()
        record = solver.step(None)
        lam.grad = violation
        reference.step()
        torch.testing.assert_close(record.multipliers["equality_x_s"], lam.detach(), rtol=0, atol=1e-12)


def test_nupi_with_zero_proportional_gain_is_plain_ascent():
    a = torch.tensor([1.0, -0.5], dtype=torch.float64)
    runs = []
    for dual in ("sgd", ceq.NuPI(kappa_p=0.0, kappa_i=1.0)):
        model = VectorModel(2, init=torch.ones(2, dtype=torch.float64))
        solver = _solver(model, projection_problem(a, [0, 1], [], torch.zeros(0)), dual)
        runs.append(torch.stack([solver.step(None).multipliers["equality_x_s"] for _ in range(20)]))
    torch.testing.assert_close(runs[0], runs[1], rtol=0, atol=1e-15)


def _trajectory(dual_optimizer, steps=1500):
    # min ε/2‖x − a‖² s.t. x = 0 with a nearly flat objective: descent–ascent is an undamped oscillator,
    # x_{t+1} − 2x_t + x_{t−1} ≈ −η_p η_d x_t (period 2π/√(η_p η_d) ≈ 63 steps here)
    a = torch.tensor([1.0, -2.0], dtype=torch.float64)
    problem = projection_problem(a, [0, 1], [], torch.zeros(0), scale=1e-3)
    model = VectorModel(2, init=torch.tensor([1.0, 1.0], dtype=torch.float64))
    solver = _solver(model, problem, dual_optimizer)
    xs = [model.x.detach().clone()]
    for _ in range(steps):
        record = solver.step(None)
        xs.append(model.x.detach().clone())
    return torch.stack(xs), record.multipliers["equality_x_s"], projection_solution(a, [0, 1], [], torch.zeros(0),
                                                                                   scale=1e-3)


def test_nupi_damps_the_descent_ascent_oscillation_to_the_kkt_point():
    xs_gda, _, _ = _trajectory("sgd")
    # critical damping of the linearised system: κ_p = 2 √(κ_i / (η_p η_d)) = 20
    xs_pi, lam_pi, (x_star, lam_star, _) = _trajectory(ceq.NuPI(kappa_p=20.0))
    tail = slice(-200, None)
    assert xs_gda[tail].abs().max() > 0.5  # still swinging with nearly its initial amplitude
    assert xs_pi[tail].abs().max() < 1e-6
    torch.testing.assert_close(xs_pi[-1], x_star, rtol=0, atol=1e-6)
    torch.testing.assert_close(lam_pi, lam_star, rtol=0, atol=1e-6)


def _relaxed_solver(dual_optimizer, **kwargs):
    model = torch.nn.Sequential(ceq.HomotopicLayer(torch.nn.Identity(), ceq.LinearBranch(3, 3)))
    problem = ceq.ConstrainedProblem(lambda out, batch: out.pow(2).mean(), [ceq.Equality(ceq.gammas)])
    return ceq.Solver(problem, model, "lagrangian", torch.optim.Adam(model.parameters(), lr=1e-3), dual_lr=0.01,
                      dual_optimizer=dual_optimizer, **kwargs)


def test_nupi_by_name_takes_the_critical_gain_of_the_linearised_dynamics():
    solver = _relaxed_solver("nupi", variable_lr=0.05)
    group = solver.optimizer.dual_optimizers[0].param_groups[0]
    # κ_p = 2 √(κ_i / (η_p η_d)) with η_p = 0.05 (plain SGD on γ), η_d = 0.01, κ_i = 1
    assert float(group["Kp"]) == pytest.approx(2.0 / (0.05 * 0.01) ** 0.5) and float(group["Ki"]) == 1.0
    assert group["lr"] == 0.01 and group["maximize"] is True
    explicit = _relaxed_solver(ceq.NuPI(kappa_p=3.0, kappa_i=0.5), variable_lr=0.05)
    assert float(explicit.optimizer.dual_optimizers[0].param_groups[0]["Kp"]) == 3.0


def test_without_plain_sgd_on_gamma_the_primal_learning_rate_stands_in():
    solver = _relaxed_solver("nupi", variable_optimizer="primal")  # γ in Adam (lr 1e-3): no plain-SGD η_p
    group = solver.optimizer.dual_optimizers[0].param_groups[0]
    assert float(group["Kp"]) == pytest.approx(2.0 / (1e-3 * 0.01) ** 0.5)


def test_nupi_by_name_damps_a_problem_without_gamma():
    # max x s.t. x ≤ 1 by SGD (η_θ = 0.05), dual η_d = 0.05: plain ascent orbits (x*, λ*) = (1, 1) for ever; the
    # default gain 2 √(κ_i / (η_θ η_d)) = 40 is the critical damping of g = x (‖∇g‖ = 1): x settles on the bound.
    x = ceq.Target(lambda m: m.x[:1], "x")
    problem = ceq.ConstrainedProblem(lambda out, batch: -out.sum(), [ceq.Inequality(x, bound=1.0)])
    model = VectorModel(1, torch.ones(1))
    solver = ceq.Solver(problem, model, "lagrangian", torch.optim.SGD(model.parameters(), 0.05), 0.05,
                        dual_optimizer="nupi")
    assert float(solver.optimizer.dual_optimizers[0].param_groups[0]["Kp"]) == pytest.approx(40.0)
    for _ in range(1536):
        solver.step()
    assert float(model.x.detach()[0]) == pytest.approx(1.0, abs=1e-3)
    assert float(solver.multipliers()["inequality_x"][0]) == pytest.approx(1.0, abs=1e-2)  # λ* = 1
    assert solver.feasibility()["inequality_x"].verdict == "feasible"


def test_unknown_dual_optimizer_name_is_refused():
    with pytest.raises(ValueError, match=r"expected 'dual_optimizer' to be one of 'sgd', 'nupi', a NuPI\(...\) or"):
        _relaxed_solver("adam")


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"kappa_p": -1.0}, r"NuPI: expected 'kappa_p' to be a finite number ≥ 0.0 \(got -1.0\)"),
    ({"kappa_i": 0.0}, r"NuPI: expected 'kappa_i' to be a finite number > 0.0 \(got 0.0\)"),
    ({"ema_nu": 1.0}, r"NuPI: expected 'ema_nu' to be a finite number ≥ 0.0 and < 1.0 \(got 1.0\)"),
])
def test_bad_gains_fail_with_a_clear_message(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ceq.NuPI(**kwargs)


def test_nupi_has_no_extrapolation_step():
    model = VectorModel(2)
    with pytest.raises(ValueError, match="dual_optimizer='nupi' has no extrapolation step"):
        ceq.Solver(projection_problem(torch.ones(2), [0], [], torch.zeros(0)), model, "lagrangian",
                   cooper.optim.ExtraSGD(model.parameters(), lr=0.1), dual_optimizer=ceq.NuPI(kappa_p=1.0),
                   constrained_optimizer="extrapolation")


def test_checkpoint_keeps_the_nupi_state():
    a = torch.tensor([1.0, -2.0], dtype=torch.float64)

    def fresh():
        model = VectorModel(2, init=torch.ones(2, dtype=torch.float64))
        return _solver(model, projection_problem(a, [0, 1], [], torch.zeros(0)), ceq.NuPI(kappa_p=5.0, ema_nu=0.3))

    straight = fresh()
    for _ in range(6):
        expected = straight.step(None).multipliers["equality_x_s"]
    first = fresh()
    for _ in range(3):
        first.step(None)
    second = fresh()
    second.load_state_dict(first.state_dict())
    for _ in range(3):
        got = second.step(None).multipliers["equality_x_s"]
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-15)
