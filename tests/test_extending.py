"""The public extension points (docs/extending.md), used from a package outside constrained_eq.

The package ``extlab`` is written from the page's ``file=`` blocks into a temporary folder and imported
from there; each test runs one of its pieces through ``ceq.Solver`` and through ``ceq run``, with no
file of constrained_eq edited.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch
import yaml

import constrained_eq as ceq
from constrained_eq.core.formulations import Formulation, formulation_names
from constrained_eq.homotopy.relax import relaxable_types
from constrained_eq.run.cli import main
from constrained_eq.run.problem_file import load_problem_file
from constrained_eq.run.problem_model import FormulationSection, TrainingSection
from constrained_eq.run.problem_yaml import ProblemFileError
from constrained_eq.run.report import unconstrained_signatures
from constrained_eq.run.strategies import STRATEGIES, formulation_for
from constrained_eq.symmetry import parse_group
from constrained_eq.tasks import Task, task_names

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from test_docs import _file_of, blocks  # noqa: E402


@pytest.fixture
def extlab(tmp_path, monkeypatch, registries):
    """``extlab`` written into ``tmp_path`` (the current folder) and imported: everything it registers."""
    for _, words, code, _ in blocks(ROOT / "docs" / "extending.md"):
        target = _file_of(words)
        if target and target.startswith("extlab/"):
            (tmp_path / target).parent.mkdir(parents=True, exist_ok=True)
            (tmp_path / target).write_text(code, encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    import extlab

    yield extlab
    for name in [n for n in sys.modules if n == "extlab" or n.startswith("extlab.")]:
        del sys.modules[name]


def _run(folder: Path, constraints: list[str], **sections) -> Path:
    """``ceq run`` (in this process, after extlab was imported) on a one-epoch spin_z problem; the run folder."""
    spec = {"task": {"name": "spin_z", "options": {"n_train": 32}}, "model": {"name": "zmix", "options": {"hidden": 4}},
            "constraints": constraints, "strategy": "ace_equality", "dual_lr": 0.01,
            "training": {"epochs": 1, "batch_size": 16}, **sections}
    (folder / "p.yaml").write_text(yaml.safe_dump(spec, sort_keys=False), encoding="utf-8")
    # one epoch does not meet the constraints; these tests read the run folder, not the verdict
    assert main(["run", "p.yaml", "--out", str(folder / "runs"), "--quiet", "--overwrite", "--allow-infeasible"]) == 0
    return folder / "runs" / "p"


def _solver(extlab, constraints, formulation="lagrangian", **options):
    task = extlab.tasks.SpinZ(n_train=16)
    loaders = task.loaders(seed=0, batch_size=8)
    model = task.model("zmix", hidden=4)
    problem = ceq.ConstrainedProblem(task.loss, constraints)
    solver = ceq.Solver(problem, model, formulation, torch.optim.SGD(model.parameters(), 1e-2),
                        example_batch=next(iter(loaders.val)), **options)
    return solver, loaders


def test_a_formulation_registered_outside_the_package_runs_by_name(extlab, tmp_path):
    assert "anneal" in formulation_names() and unconstrained_signatures()["anneal"] == "scheduled"
    solver, loaders = _solver(extlab, [ceq.Equality(ceq.gammas)], "anneal", epochs=4)
    solver.set_epoch(1)
    solver.step(next(iter(loaders.train)))
    assert ceq.gammas(solver.model).tolist() == [0.75, 0.75]
    assert not any(g.requires_grad for g in solver.variables)  # attach_variables froze γ
    assert formulation_for("custom", FormulationSection("anneal"), TrainingSection(epochs=3)) == ("anneal", {"epochs": 3})

    run = _run(tmp_path, ["Equality(target=gammas)"], strategy="custom", formulation={"name": "anneal"})
    metrics = json.loads((run / "metrics.json").read_text())
    assert (metrics["formulation"], metrics["formulation_options"]) == ("anneal", {"epochs": 1})
    report = json.loads((run / "symmetry_report.json").read_text())
    assert {layer["signature"] for layer in report["layers"]} == {"scheduled"}


def test_a_target_registered_outside_the_package_runs_by_name(extlab, tmp_path):
    solver, loaders = _solver(extlab, [ceq.Inequality("zmix_norms", bound=0.1)])
    record = solver.step(next(iter(loaders.train)))
    assert record.values["inequality_zmix_norms"].shape == (2,)
    assert (record.multipliers["inequality_zmix_norms"] > 0).all()  # the bound is violated: λ grows

    run = _run(tmp_path, ["Inequality(target=zmix_norms, bound=0.1)"])
    header = (run / "history.csv").read_text().splitlines()[0]
    assert "val/inequality_zmix_norms/value[1]" in header


def test_a_task_registered_outside_the_package_runs_by_name(extlab, tmp_path):
    assert "spin_z" in task_names() and ceq.tasks.get_task("spin_z") is extlab.tasks.SpinZ
    solver, loaders = _solver(extlab, [ceq.Equality(ceq.gammas)])
    assert torch.isfinite(solver.step(next(iter(loaders.train))).loss)

    run = _run(tmp_path, ["Equality(target=gammas)"])
    assert json.loads((run / "metrics.json").read_text())["strategy"] == "ace_equality"
    with pytest.raises(ProblemFileError, match="model.name"):
        (tmp_path / "bad.yaml").write_text((tmp_path / "p.yaml").read_text().replace("zmix", "nope"))
        load_problem_file(tmp_path / "bad.yaml")  # checked against the task's declared models


def test_a_group_registered_outside_the_package_runs_by_name(extlab, tmp_path):
    group = parse_group("Rz(3)")
    assert group == extlab.groups.Rz(3) and group.sample(2).shape == (2, 3, 3)
    solver, loaders = _solver(extlab, [ceq.LieDerivative(group="Rz(3)", bound=0.5)])
    record = solver.step(next(iter(loaders.train)))
    assert record.values["inequality_lie_regularizer_Rz3"].shape == (2,)

    run = _run(tmp_path, ["Equality(target=gammas)", 'LieDerivative(group="Rz(3)", bound=0.5)'])
    header = (run / "history.csv").read_text().splitlines()[0]
    assert "val/inequality_lie_regularizer_Rz3/value[0]" in header


def test_a_layer_registered_outside_the_package_is_relaxed_by_default(extlab, tmp_path):
    model = ceq.relax(torch.nn.Sequential(extlab.layers.ZMix(2, 3), torch.nn.Tanh()))
    layer = model[0]
    assert isinstance(layer, ceq.HomotopicLayer) and isinstance(layer.eq, extlab.layers.ZMix)
    assert tuple(layer.neq.branch.algebra_in.shape) == (1, 6, 6)  # ZVectors: the one generator of Rz
    ceq.register_relaxable("extlab.layers:ZMix", extlab.layers.zmix_features)  # by path: imported on use
    assert extlab.layers.ZMix in relaxable_types()
    ceq.register_relaxable("no_such_package.mod:Layer", extlab.layers.zmix_features)  # skipped: not installed
    assert ceq.relax(torch.nn.Sequential(extlab.layers.ZMix(2, 3)))[0].eq.in_channels == 2

    run = _run(tmp_path, ["Equality(target=gammas)"])  # the task's model: relax() found the registered ZMix
    assert json.loads((run / "symmetry_report.json").read_text())["layers"][1]["layer"] == 1


def test_a_strategy_registered_outside_the_package_is_accepted_by_problem_files(extlab, tmp_path):
    ceq.register_strategy(ceq.Strategy("anneal_all", "anneal", deploys_projection=True, doc="γ annealed 1 → 0"))
    assert STRATEGIES["anneal_all"] == "anneal"
    run = _run(tmp_path, ["Equality(target=gammas)"], strategy="anneal_all")
    metrics = json.loads((run / "metrics.json").read_text())
    assert (metrics["strategy"], metrics["formulation"], metrics["formulation_options"]) == (
        "anneal_all", "anneal", {"epochs": 1})


def test_the_base_classes_are_abstract_and_registration_checks_its_arguments(registries):
    with pytest.raises(TypeError):
        Formulation()
    with pytest.raises(TypeError):
        Task()

    class Half(Formulation):  # no build(): abstract
        pass

    with pytest.raises(TypeError, match="implements build"):
        ceq.register_formulation("half", Half)
    with pytest.raises(ValueError, match="own name 'lagrangian'"):
        ceq.register_formulation("other", type(ceq.resolve_formulation("lagrangian")))
    with pytest.raises(ValueError, match="identifier"):
        ceq.register_task("not a name", Task)
    with pytest.raises(TypeError, match="Task subclass"):
        ceq.register_task("thing", object)
    with pytest.raises(TypeError, match="Group subclass"):
        ceq.register_group("G", object)
    with pytest.raises(TypeError, match="nn.Module subclass"):
        ceq.register_relaxable(object, lambda m: None)
