"""Targets declare what they read; sizing never touches the caller's loader; checkpoints keyed on structure."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

import constrained_eq as ceq
from constrained_eq.testing.toy_problems import VectorModel


def test_what_a_target_reads_is_declared_or_inferred():
    def weights_only(model):
        return model.x.abs()

    def with_batch(model, batch):
        return batch.mean().reshape(1)

    def optional(model, batch=None, output=None):
        return model.x

    assert ceq.Target(weights_only, "w").reads == ("parameters",)
    assert ceq.Target(with_batch, "b").reads == ("parameters", "batch")
    assert ceq.Target(optional, "o").reads == ("parameters",)
    assert ceq.Target(lambda m, b, o: o, "all").reads == ("parameters", "batch", "output")
    assert ceq.Target(lambda m, b, o: m.x, "declared", reads="parameters").needs_batch is False
    assert ceq.spectral_norms.reads == ("parameters",) and ceq.gammas.reads == ("parameters",)
    with pytest.raises(ValueError, match="expected 'reads' to list some of"):
        ceq.Target(weights_only, "bad", reads=("weights",))
    with pytest.raises(ValueError, match="contradicts"):
        ceq.Target(weights_only, "bad", reads="batch", needs_batch=False)


def test_a_weights_only_target_needs_no_example_batch():
    model = VectorModel(2, torch.tensor([3.0, -1.0]))
    problem = ceq.ConstrainedProblem(lambda out, batch: (out - 2).pow(2).sum(),
                                     [ceq.Inequality(lambda model: model.x.abs(), bound=1.0)])
    solver = ceq.Solver(problem, model, "lagrangian", torch.optim.SGD(model.parameters(), lr=0.1), 0.5)
    record = solver.step(torch.zeros(1))
    assert record.values["inequality_<lambda>".replace("<lambda>", "target")].tolist() == [3.0, 1.0]


def _order(loader):
    return [batch[0].tolist() for batch in loader]


@pytest.mark.parametrize("seeded", [True, False])
def test_sizing_from_a_loader_leaves_its_shuffle_order(seeded):
    def make():
        torch.manual_seed(1)
        data = TensorDataset(torch.arange(12.0).reshape(12, 1), torch.zeros(12))
        return DataLoader(data, batch_size=4, shuffle=True,
                          generator=torch.Generator().manual_seed(0) if seeded else None)

    expected = _order(make())
    model = torch.nn.Linear(1, 1)
    loader = make()  # reseeds torch's global generator: an unseeded loader shuffles from it
    problem = ceq.ConstrainedProblem(lambda out, batch: out.pow(2).mean(),
                                     [ceq.Inequality(lambda m, b, o: o.mean().reshape(1), bound=1.0)])
    ceq.Solver(problem, model, "lagrangian", example_batch=loader)
    assert _order(loader) == expected


def _problem(loss, bound=0.5):
    return ceq.ConstrainedProblem(loss, [ceq.Inequality(ceq.Target(lambda m, b, o: m.x, "x", needs_batch=False),
                                                        bound=bound)])


def _loss_a(out, batch):
    return (out - 1).pow(2).sum()


def _loss_b(out, batch):
    return (out - 1).pow(2).sum()


def test_a_renamed_loss_resumes_and_a_real_change_is_refused_by_name():
    solver = ceq.Solver(_problem(_loss_a), VectorModel(2), "resilient", dual_lr=0.1, rho=0.5)
    for _ in range(3):
        solver.step(torch.zeros(1))
    state = solver.state_dict()
    renamed = ceq.Solver(_problem(_loss_b), VectorModel(2), "resilient", dual_lr=0.1, rho=0.5)
    renamed.load_state_dict(state)
    assert renamed.step_count == 3 and torch.equal(renamed.model.x, solver.model.x)
    with pytest.raises(ValueError, match=r"constraints.inequality_x.bound: 0.5 -> 0.7"):
        ceq.Solver(_problem(_loss_a, 0.7), VectorModel(2), "resilient", rho=0.5).load_state_dict(state)
    with pytest.raises(ValueError, match=r"formulation.options.rho: 0.5 -> 2.0"):
        ceq.Solver(_problem(_loss_a), VectorModel(2), "resilient", rho=2.0).load_state_dict(state)
    with pytest.raises(ValueError, match=r"constraints.inequality_x.size: 2 -> 3"):
        ceq.Solver(_problem(_loss_a), VectorModel(3), "resilient", rho=0.5).load_state_dict(state)
