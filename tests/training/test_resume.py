"""fit interrupted and resumed gives the same final state and history.csv as an uninterrupted fit."""

import pytest
import torch

import constrained_eq as ceq
from constrained_eq.tasks.toy_rotation import ToyRotation
from constrained_eq.training.loop import fit
from constrained_eq.training.settings import Logging


class _Interrupting:
    """A loader that raises KeyboardInterrupt at global batch ``stop_at`` (keeps len and generator)."""

    def __init__(self, loader, stop_at):
        self.loader, self.stop_at, self.seen = loader, stop_at, 0
        self.generator = loader.generator

    def __len__(self):
        return len(self.loader)

    def __iter__(self):
        for batch in self.loader:
            if self.seen == self.stop_at:
                raise KeyboardInterrupt
            self.seen += 1
            yield batch


def _setup(formulation, **options):
    torch.manual_seed(0)
    task = ToyRotation(n_train=48, n_val=16, n_test=16, breaking=0.3)
    loaders = task.loaders(seed=7, batch_size=16)
    model = task.model("vector_net", hidden=4, n_layers=2)
    problem = ceq.ConstrainedProblem(ceq.Objective(task.loss, task.forward), [ceq.Equality(ceq.gammas)])
    solver = ceq.Solver(problem, model, formulation, torch.optim.Adam(model.parameters(), 1e-2), 0.05, **options)
    return task, loaders, solver


@pytest.mark.parametrize("formulation,options", [("resilient", {"rho": 1.0}), ("schedule", {"epochs": 5})])
def test_resumed_fit_equals_uninterrupted_fit(tmp_path, formulation, options):
    kwargs = dict(epochs=5, checkpoint_every=2, logging=Logging(steps_every=2), progress=False)
    task, loaders, solver = _setup(formulation, **options)
    fit(solver, loaders.train, loaders.val, run_dir=tmp_path / "a", **kwargs)
    reference = solver.state_dict()

    task, loaders, solver = _setup(formulation, **options)
    with pytest.raises(KeyboardInterrupt):  # 3 steps per epoch: stops inside epoch 3, last checkpoint after epoch 1
        fit(solver, _Interrupting(loaders.train, 10), loaders.val, run_dir=tmp_path / "b", **kwargs)
    assert len((tmp_path / "b" / "history.csv").read_text().splitlines()) == 1 + 3  # epochs 0–2 were logged

    task, loaders, solver = _setup(formulation, **options)
    result = fit(solver, loaders.train, loaders.val, run_dir=tmp_path / "b", resume=True, **kwargs)
    resumed = solver.state_dict()

    assert result.epochs == 5
    for key in ("model", "slacks"):
        for name, tensor in reference[key].items():
            assert torch.equal(tensor, resumed[key][name]), f"{key}.{name}"
    for name, tensor in reference["cmp"].items():
        if isinstance(tensor, torch.Tensor):
            assert torch.equal(tensor, resumed["cmp"][name]), name
    assert reference["step"] == resumed["step"] == 15
    assert torch.equal(reference["rng"]["torch"], resumed["rng"]["torch"])
    for name in ("history.csv", "steps.csv"):
        assert (tmp_path / "a" / name).read_text() == (tmp_path / "b" / name).read_text(), name
