"""Solver construction checks, non-finite handling, optimizer groups and device placement."""

import pytest
import torch

import constrained_eq as ceq
from constrained_eq.core.formulations import Lagrangian
from constrained_eq.testing.toy_problems import VectorModel


class Relaxed(torch.nn.Module):
    """Two homotopic linear layers on R^3: f_eq = a·x (commutes with rotations), f_neq = W x."""

    def __init__(self):
        super().__init__()
        self.layers = torch.nn.Sequential(
            ceq.HomotopicLayer(Scale(), ceq.LinearBranch(3, 3)), ceq.HomotopicLayer(Scale(), ceq.LinearBranch(3, 3))
        )

    def forward(self, x):
        return self.layers(x)


class Scale(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.a = torch.nn.Parameter(torch.tensor(0.5))

    def forward(self, x):
        return self.a * x


def _mse_problem(*constraints):
    return ceq.ConstrainedProblem(lambda out, batch: (out - batch[1]).pow(2).mean(), list(constraints))


def _batch(device="cpu"):
    x = torch.randn(8, 3, device=device)
    return x, 2 * x


def test_gammas_get_their_own_sgd_group_and_leave_the_primal_optimizer():
    model = Relaxed()
    adam = torch.optim.Adam(model.parameters(), lr=1e-3)
    solver = ceq.Solver(_mse_problem(ceq.Equality(ceq.gammas)), model, "lagrangian", adam, dual_lr=1e-2)
    gamma_ids = {id(layer.gamma) for layer in model.layers}
    assert not gamma_ids & {id(p) for g in adam.param_groups for p in g["params"]}
    primal, variables = solver.optimizer.primal_optimizers
    assert isinstance(variables, torch.optim.SGD)
    assert {id(p) for g in variables.param_groups for p in g["params"]} == gamma_ids
    assert variables.param_groups[0]["lr"] == 1e-3


def test_variable_optimizer_primal_keeps_gammas_in_adam():
    model = Relaxed()
    adam = torch.optim.Adam(model.parameters(), lr=1e-3)
    solver = ceq.Solver(_mse_problem(ceq.Equality(ceq.gammas)), model, "lagrangian", adam, variable_optimizer="primal")
    assert solver.optimizer.primal_optimizers == [adam]
    assert len([p for g in adam.param_groups for p in g["params"]]) == len(list(model.parameters()))


def test_one_gamma_step_uses_plain_sgd_with_the_multiplier():
    model = Relaxed()
    solver = ceq.Solver(_mse_problem(ceq.Equality(ceq.gammas)), model, "lagrangian",
                        torch.optim.Adam(model.parameters(), lr=1e-3), dual_lr=0.1, variable_lr=0.05)
    with torch.no_grad():
        solver.cmp.equality_gammas.multiplier.weight.copy_(torch.tensor([0.3, -0.2]))
    batch = _batch()
    model.zero_grad()
    (batch[1] - model(batch[0])).pow(2).mean().backward()
    grads = torch.stack([layer.gamma.grad for layer in model.layers])
    before = ceq.gammas(model).detach().clone()
    record = solver.step(batch)
    torch.testing.assert_close(ceq.gammas(model).detach(), before - 0.05 * (grads + torch.tensor([0.3, -0.2])))
    torch.testing.assert_close(record.multipliers["equality_gammas"], torch.tensor([0.3, -0.2]) + 0.1 * before)


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"dual_lr": 0.0}, ValueError, r"Solver: expected 'dual_lr' to be a finite number > 0 \(got 0.0\)"),
        ({"dual_lr": float("inf")}, ValueError, r"expected 'dual_lr' to be a finite number > 0 \(got inf\)"),
        ({"formulation": "lagrange"}, ValueError, r"Expected 'formulation' to be one of 'lagrangian'"),
        ({"constrained_optimizer": "gda"}, ValueError,
         r"expected 'constrained_optimizer' to be one of 'simultaneous', 'alternating_primal_dual'"),
        ({"variable_optimizer": "adam"}, ValueError, r"expected 'variable_optimizer' to be 'sgd', 'primal' or a factory"),
        ({"dual_every": 0}, ValueError, r"expected 'dual_every' to be an integer ≥ 1 \(got 0\)"),
        ({"on_nonfinite": "ignore"}, ValueError, r"expected 'on_nonfinite' to be one of 'raise', 'skip'"),
        ({"dual_optimizer": lambda ps: torch.optim.SGD(ps, lr=0.1)}, ValueError,
         r"dual optimizer param_group 0 has maximize=False; build it with maximize=True, "
         r"e.g. torch.optim.SGD\(params, lr=1e-2, maximize=True\)"),
        ({"primal_optimizer": "adagrad"}, ValueError,
         r"expected 'primal_optimizer' to be one of 'adam', 'adamw', 'sgd', an optimizer, a list of optimizers "
         r"or a factory params -> Optimizer \(got 'adagrad'\)"),
        ({"primal_optimizer": 3}, TypeError, r"expected 'primal_optimizer' to be a name, a torch.optim.Optimizer"),
    ],
)
def test_bad_solver_arguments_fail_at_construction(kwargs, error, message):
    kwargs = {"formulation": "lagrangian", **kwargs}
    with pytest.raises(error, match=message):
        ceq.Solver(_mse_problem(ceq.Equality(ceq.gammas)), Relaxed(), **kwargs)


@pytest.mark.parametrize(("formulation", "kwargs", "message"), [
    ("lagrangian", {"dual_lrr": 0.1},
     r"^Solver\(\) got an unexpected keyword argument 'dual_lrr' \(did you mean 'dual_lr'.*\?\); the Solver takes "
     r"formulation, primal_optimizer, dual_lr, primal_lr, .*, compile, and formulation 'lagrangian' takes no options$"),
    ("resilient", {"rh": 2.0},
     r"^Solver\(\) got an unexpected keyword argument 'rh' \(did you mean 'rho'\?\); .*formulation 'resilient' "
     r"takes rho$"),
    (Lagrangian(), {"primal_lrr": 0.1},
     r"unexpected keyword argument 'primal_lrr' \(did you mean 'primal_lr'.*the formulation Lagrangian takes no options"),
])
def test_an_unknown_keyword_is_a_type_error_naming_it(formulation, kwargs, message):
    with pytest.raises(TypeError, match=message) as err:
        ceq.Solver(_mse_problem(ceq.Equality(ceq.gammas)), Relaxed(), formulation, **kwargs)
    assert "takes no arguments" not in str(err.value)
    solver = ceq.Solver(_mse_problem(ceq.Equality(ceq.gammas)), Relaxed(), "resilient", rho=2.0)  # a real option
    assert solver.formulation.rho == 2.0


def test_targets_with_wrong_shape_or_dtype_are_rejected_at_construction():
    bad_shape = ceq.Target(lambda m, b, o: torch.zeros(2, 3), "matrix", needs_batch=False)
    bad_dtype = ceq.Target(lambda m, b, o: torch.zeros(3, dtype=torch.long), "ints", needs_batch=False)
    with pytest.raises(ValueError, match=r"target 'matrix' of constraint 'equality_matrix' to return a 1-D floating "
                                         r"tensor of shape \(L,\) \(got shape \(2, 3\), dtype torch.float32\)"):
        ceq.Solver(_mse_problem(ceq.Equality(bad_shape)), Relaxed())
    with pytest.raises(ValueError, match=r"\(got shape \(3,\), dtype torch.int64\)"):
        ceq.Solver(_mse_problem(ceq.Equality(bad_dtype)), Relaxed())


def test_batch_targets_need_an_example_batch():
    per_sample = ceq.Target(lambda m, b, o: o.norm(dim=-1).mean().reshape(1), "out_norm")
    with pytest.raises(ValueError, match=r"constraints \['inequality_out_norm'\] have targets that read the batch.*"
                                         r"example_batch="):
        ceq.Solver(_mse_problem(ceq.Inequality(per_sample, bound=1.0)), Relaxed())
    solver = ceq.Solver(_mse_problem(ceq.Inequality(per_sample, bound=1.0)), Relaxed(), example_batch=_batch())
    assert solver.step(_batch()).multipliers["inequality_out_norm"].shape == (1,)


def test_model_without_homotopic_layers_explains_how_to_relax():
    with pytest.raises(ValueError, match=r"contain HomotopicLayer modules \(got none in Linear\).*relax\(model\)"):
        ceq.Solver(_mse_problem(ceq.Equality(ceq.gammas)), torch.nn.Linear(3, 3))


def _state(solver):
    return {k: v.clone() for k, v in solver.model.state_dict().items()} | {
        f"lambda.{k}": v for k, v in solver.multipliers().items()
    } | {f"u.{k}": u.detach().clone() for k, u in solver.slacks.items()}


@pytest.mark.parametrize("formulation", ["lagrangian", "resilient"])
def test_nan_loss_raises_with_step_and_leaves_state_intact(formulation):
    model = Relaxed()
    solver = ceq.Solver(_mse_problem(ceq.Equality(ceq.gammas)), model, formulation,
                        torch.optim.Adam(model.parameters(), lr=1e-2), dual_lr=0.1)
    for _ in range(3):
        solver.step(_batch())
    before = _state(solver)
    adam_state = {k: v.clone() for k, v in solver.optimizer.primal_optimizers[0].state_dict()["state"][0].items()}
    x, y = _batch()
    y[0, 0] = float("nan")
    with pytest.raises(ceq.NonFiniteError, match=r"step 3: the objective Objective\(loss=<lambda>\) is nan"):
        solver.step((x, y))
    after = _state(solver)
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    for k, v in solver.optimizer.primal_optimizers[0].state_dict()["state"][0].items():
        assert torch.equal(v, adam_state[k])
    assert solver.step_count == 3


def test_nan_violation_names_the_constraint():
    model = Relaxed()
    bad = ceq.Target(lambda m, b, o: m.layers[0].eq.a.reshape(1) / torch.zeros(1), "ratio", needs_batch=False)
    solver = ceq.Solver(_mse_problem(ceq.Inequality(bad, bound=1.0)), model, "lagrangian", dual_lr=0.1)
    with pytest.raises(ceq.NonFiniteError, match=r"step 0: constraint 'inequality_ratio' has non-finite values \[inf\]"):
        solver.step(_batch())


def test_nonfinite_gradients_are_refused_before_any_update():
    model = Relaxed()
    sqrt_target = ceq.Target(lambda m, b, o: (m.layers[0].eq.a - 0.5).abs().sqrt().reshape(1), "root", needs_batch=False)
    solver = ceq.Solver(_mse_problem(ceq.Penalty(sqrt_target, weight=1.0)), model, "lagrangian", dual_lr=0.1)
    before = _state(solver)
    with pytest.raises(ceq.NonFiniteError, match=r"step 0: a gradient is non-finite"):
        solver.step(_batch())  # d/da sqrt(|a − 0.5|) at a = 0.5 is inf
    after = _state(solver)
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_skip_policy_skips_the_batch_and_goes_on():
    model = Relaxed()
    solver = ceq.Solver(_mse_problem(ceq.Equality(ceq.gammas)), model, "lagrangian", dual_lr=0.1, on_nonfinite="skip")
    x, y = _batch()
    y[0] = float("inf")
    before = _state(solver)
    record = solver.step((x, y))
    assert record.skipped and all(torch.equal(before[k], v) for k, v in _state(solver).items())
    assert not solver.step(_batch()).skipped


def test_step_runs_on_the_models_device(device):
    model = Relaxed().to(device)
    solver = ceq.Solver(_mse_problem(ceq.Resilient(ceq.gammas, rho=1.0)), model, "lagrangian", dual_lr=0.1)
    record = solver.step(_batch(device))
    for tensor in [record.loss, *record.multipliers.values(), *record.slacks.values(), *record.values.values()]:
        assert tensor.device.type == device.type


def test_state_dict_round_trip_restores_duals_slacks_and_counters():
    model = Relaxed()
    solver = ceq.Solver(_mse_problem(ceq.Resilient(ceq.gammas, rho=1.0)), model, "lagrangian", dual_lr=0.1)
    for _ in range(5):
        solver.step(_batch())
    state = solver.state_dict()
    other = ceq.Solver(_mse_problem(ceq.Resilient(ceq.gammas, rho=1.0)), Relaxed(), "lagrangian", dual_lr=0.1)
    other.load_state_dict(state)
    assert other.step_count == 5
    assert all(torch.equal(a, b) for a, b in zip(_state(solver).values(), _state(other).values(), strict=True))


def test_loading_a_checkpoint_of_another_problem_is_refused():
    solver = ceq.Solver(_mse_problem(ceq.Resilient(ceq.gammas, rho=1.0)), Relaxed(), "lagrangian")
    other = ceq.Solver(_mse_problem(ceq.Resilient(ceq.gammas, rho=2.0)), Relaxed(), "lagrangian")
    with pytest.raises(ValueError, match=r"another problem: constraints.resilient_gammas.rho: 1.0 -> 2.0"):
        other.load_state_dict(solver.state_dict())


def test_vector_model_default_is_float32():
    assert VectorModel(2).x.dtype == torch.float32


@pytest.mark.parametrize(("formulation", "options"), [("lagrangian", {"dual_every": 2}), ("resilient", {"rho": 0.5})])
def test_the_fused_simultaneous_roll_equals_coopers_bitwise(formulation, options):
    """One autograd call for the primal and dual Lagrangians gives exactly Cooper's two backward passes."""
    import copy
    import types

    import cooper

    torch.manual_seed(0)
    model = Relaxed()
    problem = _mse_problem(ceq.Equality(ceq.gammas))
    solvers = [ceq.Solver(problem, copy.deepcopy(model), formulation, dual_lr=0.1, variable_lr=0.05, **options)
               for _ in range(2)]
    reference = solvers[1].optimizer
    reference.roll = types.MethodType(cooper.optim.SimultaneousOptimizer.roll, reference)
    for _ in range(5):
        batch = _batch()
        records = [solver.step(batch) for solver in solvers]
    for a, b in zip(solvers[0].model.parameters(), solvers[1].model.parameters(), strict=True):
        assert torch.equal(a, b)
    for key, lam in records[0].multipliers.items():
        assert torch.equal(lam, records[1].multipliers[key]) and lam.abs().max() > 0
    for key, slack in records[0].slacks.items():
        assert torch.equal(slack, records[1].slacks[key])


def test_the_solver_reads_gamma_from_the_parameters_it_found_once(monkeypatch):
    """``gammas`` has ``from_variables``: after construction a step does not search the model again."""
    from constrained_eq.homotopy import layers as homotopy

    model = Relaxed()
    solver = ceq.Solver(_mse_problem(ceq.Equality(ceq.gammas)), model, "lagrangian", dual_lr=0.1)
    expected = ceq.gammas(model).detach().clone()

    def no_walk(_model):
        raise AssertionError("the model was searched during the step")

    monkeypatch.setattr(homotopy, "_module_tree_layers", no_walk)
    record = solver.step(_batch())
    assert torch.equal(record.values["equality_gammas"], expected)


def test_the_gradient_of_gamma_is_accumulated_in_place():
    """γ is stacked before the forward, so each γ's two gradients (forward, λᵀγ) are summed in place.

    Stacked after it, the stack's (view) gradient arrived first and every γ cost one out-of-place
    ``aten::add`` more: the overhead that grew with the number of layers (docs/performance.md).
    """
    from torch.profiler import ProfilerActivity, profile

    layers = 16
    model = torch.nn.Sequential(*(ceq.HomotopicLayer(Scale(), ceq.LinearBranch(3, 3)) for _ in range(layers)))
    solver = ceq.Solver(_mse_problem(ceq.Equality(ceq.gammas)), model, "lagrangian", dual_lr=0.1,
                        check_finite=False)
    batch = _batch()
    solver.step(batch)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        solver.step(batch)
    adds = sum(e.count for e in prof.key_averages() if e.key == "aten::add")
    # the forward's f_eq + γ·f_neq is one add per layer; a second one per layer is the accumulation come back
    assert adds < layers + 8, f"{adds} out-of-place adds in one step of {layers} layers: about one per γ too many"


def test_from_variables_needs_variables():
    with pytest.raises(ValueError, match="'from_variables' needs 'variables'"):
        ceq.Target(lambda m, b, o: m.x, "x", from_variables=torch.stack)
