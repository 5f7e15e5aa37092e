"""100 steps + save + load + 100 steps equals 200 steps, exactly (Solver level).

Every step draws from torch's global RNG (input noise), so the resumed run matches only if the
checkpoint restores the RNG state too.
"""

import io

import torch

import constrained_eq as ceq
from constrained_eq.tasks.toy_rotation import ToyRotation


def _batches(n):
    generator = torch.Generator().manual_seed(1)
    task = ToyRotation(n_train=8, n_val=8, n_test=8)
    out = []
    for _ in range(n):
        x = torch.randn(8, 4, 3, generator=generator)
        out.append((x, x.roll(1, dims=1) + 0.5 * x.norm(dim=-1, keepdim=True) * torch.tensor([0.0, 0.0, 1.0])))
    return task, out


def _noisy_forward(task):
    """The task's forward on inputs with N(0, 0.1²) noise drawn from the global RNG."""
    return lambda model, batch: task.forward(model, (batch[0] + 0.1 * torch.randn_like(batch[0]), *batch[1:]))


def _solver():
    torch.manual_seed(0)
    task, _ = _batches(0)
    model = task.model("vector_net", hidden=6, n_layers=3)
    problem = ceq.ConstrainedProblem(ceq.Objective(task.loss, _noisy_forward(task)), [ceq.Equality(ceq.gammas)])
    return ceq.Solver(problem, model, "resilient", torch.optim.Adam(model.parameters(), 1e-2), 0.05,
                      variable_optimizer="sgd", variable_lr=0.02, rho=1.0)


def _flatten(state, prefix=""):
    if isinstance(state, torch.Tensor):
        return {prefix: state}
    if isinstance(state, dict):
        return {k: v for key, value in state.items() for k, v in _flatten(value, f"{prefix}.{key}").items()}
    if isinstance(state, list | tuple):
        return {k: v for i, value in enumerate(state) for k, v in _flatten(value, f"{prefix}[{i}]").items()}
    return {prefix: state}


def _assert_states_equal(a, b):
    flat_a, flat_b = _flatten(a), _flatten(b)
    assert flat_a.keys() == flat_b.keys()
    for key, value in flat_a.items():
        if isinstance(value, torch.Tensor):
            assert torch.equal(value, flat_b[key]), key
        else:
            assert value == flat_b[key], key


def test_save_load_resume_equals_uninterrupted_run():
    _, batches = _batches(200)
    straight = _solver()
    for batch in batches:
        straight.step(batch)

    first = _solver()
    for batch in batches[:100]:
        first.step(batch)
    buffer = io.BytesIO()
    torch.save(first.state_dict(), buffer)
    torch.manual_seed(123)  # the checkpoint must restore the RNG too
    second = _solver()
    second.load_state_dict(torch.load(io.BytesIO(buffer.getvalue()), weights_only=True))
    _assert_states_equal(first.model.state_dict(), second.model.state_dict())  # the weights came back
    for batch in batches[100:]:
        second.step(batch)

    state_a, state_b = straight.state_dict(), second.state_dict()
    _assert_states_equal(state_a["model"], state_b["model"])
    _assert_states_equal(state_a["cmp"], state_b["cmp"])
    _assert_states_equal(state_a["slacks"], state_b["slacks"])
    _assert_states_equal(state_a["optimizer"], state_b["optimizer"])
    assert state_a["step"] == state_b["step"] == 200
    assert torch.equal(ceq.gammas(straight.model), ceq.gammas(second.model))
    for key in straight.multipliers():
        assert torch.equal(straight.multipliers()[key], second.multipliers()[key])
    assert straight.slacks.keys() == second.slacks.keys() and len(straight.slacks) == 1
    # the run did move γ away from its initial value
    assert (ceq.gammas(straight.model).detach() != 1.0).all()


def test_checkpoint_from_another_formulation_is_refused():
    solver = _solver()
    state = solver.state_dict()
    model = solver.model
    other = ceq.Solver(solver.problem, model, "lagrangian", torch.optim.Adam(model.parameters(), 1e-2), 0.05)
    try:
        other.load_state_dict(state)
    except ValueError as err:
        assert "formulation" in str(err)
    else:
        raise AssertionError("load_state_dict accepted a checkpoint of another formulation")
