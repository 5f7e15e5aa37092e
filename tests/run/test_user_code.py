"""User code named by import path in problem files (docs/your-own-code.md), run from a folder outside the repo."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from constrained_eq._utils.import_path import ImportPathError, is_import_path, quote_import_paths
from constrained_eq.run.build import build
from constrained_eq.run.problem_file import load_problem_file
from constrained_eq.run.problem_yaml import ProblemFileError

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))
from test_docs import _file_of, blocks  # noqa: E402


def write_user_package(folder: Path) -> None:
    """Write the files of docs/your-own-code.md (its ``file=`` blocks) into ``folder``."""
    for _, words, code, _ in blocks(ROOT / "docs" / "your-own-code.md"):
        target = _file_of(words)
        if target:
            (folder / target).parent.mkdir(parents=True, exist_ok=True)
            (folder / target).write_text(code, encoding="utf-8")


@pytest.fixture
def lab(tmp_path, monkeypatch):
    """A temporary folder holding the user package and lab.yaml, as the current folder."""
    write_user_package(tmp_path)
    monkeypatch.chdir(tmp_path)
    yield tmp_path
    for name in [n for n in sys.modules if n == "labmodels" or n.startswith("labmodels.")]:
        del sys.modules[name]
    while str(tmp_path) in sys.path:
        sys.path.remove(str(tmp_path))


def _edit(folder: Path, old: str, new: str, name: str = "bad.yaml") -> Path:
    text = (folder / "lab.yaml").read_text()
    assert old in text
    (folder / name).write_text(text.replace(old, new, 1))
    return folder / name


def test_ceq_run_imports_the_user_package_from_the_current_folder(tmp_path):
    """`ceq run` in a folder outside the repository; `-P` keeps that folder off sys.path, so it is ceq that adds it."""
    assert not tmp_path.resolve().is_relative_to(ROOT)
    write_user_package(tmp_path)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg"}
    out = subprocess.run([sys.executable, "-P", "-m", "constrained_eq.run.cli", "run", "lab.yaml", "--quiet",
                          "--set", "training.epochs=2", "--set", "optimizer.lr=5e-3", "--set", "logging.tensorboard=true",
                          "--allow-infeasible"],  # two epochs do not meet the user's bound; the imports are tested
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    run = tmp_path / "runs" / "lab"
    problem = json.loads((run / "problem.json").read_text())["problem"]
    assert problem["optimizer"] == {"name": "torch.optim:RAdam", "lr": 0.005, "weight_decay": 0.0,
                                    "options": {"betas": [0.9, 0.99]}, "groups": []}
    assert problem["task"]["name"] == "labmodels.tasks:Spin" and problem["training"]["epochs"] == 2
    rows = list(csv.DictReader(open(run / "history.csv")))
    assert [int(r["epoch"]) for r in rows] == [0, 1]
    for row in rows:  # the user's inequality has its own multiplier, projected onto λ ≥ 0
        assert float(row["inequality_first_layer_norm.lambda.0"]) >= 0.0
        assert float(row["inequality_first_layer_norm.value.0"]) > 0.0
    assert json.loads((run / "metrics.json").read_text())["test_projected"]["loss"] > 0
    assert list((run / "tensorboard").glob("events.out.tfevents.*")) and problem["logging"] == {"tensorboard": True}


def test_user_target_model_and_optimizer_are_the_ones_built(lab):
    spec = load_problem_file("lab.yaml", {"optimizer.lr": 5e-3})
    built = build(spec)
    model = built.model
    assert type(model).__module__ == "labmodels.nets" and type(model).__name__ == "VectorMLP"
    assert type(built.task).__name__ == "Spin" and built.task.options["n_train"] == 128
    optimizers = [o for o in built.solver.optimizer.primal_optimizers if isinstance(o, torch.optim.RAdam)]
    assert len(optimizers) == 1
    group = optimizers[0].param_groups[0]
    assert group["lr"] == 5e-3 and tuple(group["betas"]) == (0.9, 0.99)
    batch = next(iter(built.train_loader))
    expected = model.first.eq.weight.detach().norm()  # ‖W_1‖_F before the step: what the target reads
    record = built.solver.step(batch)
    assert torch.allclose(record.values["inequality_first_layer_norm"], expected.reshape(1))
    # the inequality's violation is g − b with b = 1.5
    assert torch.allclose(record.violations["inequality_first_layer_norm"], expected.reshape(1) - 1.5)


@pytest.mark.parametrize(("old", "new", "line", "message"), [
    ("labmodels.nets:vector_mlp", "labmodelz.nets:vector_mlp", 5,
     "'model.name': cannot import the model 'labmodelz.nets:vector_mlp': no module named 'labmodelz'"),
    ("labmodels.nets:vector_mlp", "labmodels.nets:wide", 5,
     "'model.name': cannot import the model 'labmodels.nets:wide': module 'labmodels.nets' has no attribute 'wide'"),
    ("labmodels.nets:vector_mlp", "labmodels.nets:torch", 5,
     "'model.name': Expected the model 'labmodels.nets:torch' to be a function or an nn.Module class"),
    ("{hidden: 16}", "{width: 16}", 6,
     "'model.options': the model 'labmodels.nets:vector_mlp' has signature vector_mlp(points: int = 4, hidden: int "
     "= 16), which does not accept (width)"),
    ("labmodels.tasks:Spin", "labmodels.nets:VectorMLP", 2,
     "Expected the task 'labmodels.nets:VectorMLP' to be a subclass of constrained_eq.tasks.Task (got the class "
     "VectorMLP)"),
    ("labmodels.tasks:Spin", "labmodels.tasks:Spine", 2, "module 'labmodels.tasks' has no attribute 'Spine'"),
    ("labmodels.targets:first_layer_norm", "labmodels.targets:nope", 9,
     "'constraints[1]': cannot import the constraint target 'labmodels.targets:nope'"),
    ("labmodels.targets:first_layer_norm", "labmodels.nets:Mix", 9,
     "'constraints[1]': Expected the constraint target 'labmodels.nets:Mix' to be a Target or a function "
     "fn(model) or fn(model, batch, output) -> Tensor (L,) (got the class Mix)"),
    ("torch.optim:RAdam", "torch.nn:Linear", 12,
     "'optimizer.name': Expected the optimizer 'torch.nn:Linear' to be a torch.optim.Optimizer subclass"),
    ("torch.optim:RAdam", "torch.optim:SGD", 12, "'optimizer.name': the optimizer 'torch.optim:SGD' has signature"),
])
def test_a_bad_import_path_is_one_line_naming_file_and_line(lab, old, new, line, message):
    path = _edit(lab, old, new)
    with pytest.raises(ProblemFileError) as err:
        load_problem_file(path)
    text = str(err.value)
    assert "\n" not in text and text.startswith(f"{path}:{line}: ") and message in text, text


def test_a_target_with_the_wrong_signature_is_refused(lab):
    (lab / "labmodels" / "targets.py").write_text("def four(model, batch, output, scale):\n    return model.first.gamma\n"
                                                  "def none():\n    return 1\n")
    path = _edit(lab, "labmodels.targets:first_layer_norm", "labmodels.targets:four")
    with pytest.raises(ProblemFileError, match=r"bad\.yaml:9: 'constraints\[1\]': the constraint target "
                                               r"'labmodels\.targets:four' has signature four\(model, batch, output, "
                                               r"scale\), which does not accept \(…, …, …\)"):
        load_problem_file(path)
    path = _edit(lab, "labmodels.targets:first_layer_norm", "labmodels.targets:none")
    with pytest.raises(ProblemFileError, match=r"the constraint target 'labmodels\.targets:none' has signature "
                                               r"none\(\), which does not accept \(…\)"):
        load_problem_file(path)


def test_a_target_of_the_model_alone_is_taken_by_import_path_as_in_python(lab):
    """``fn(model)`` by import path is ``ceq.Target(fn, name)``: it reads the parameters, and no batch."""
    (lab / "labmodels" / "norms.py").write_text("def first_norm(model):\n"
                                                "    return model.first.eq.weight.norm().reshape(1)\n")
    path = _edit(lab, "labmodels.targets:first_layer_norm", "labmodels.norms:first_norm")
    built = build(load_problem_file(path, {"optimizer.lr": 5e-3}))
    (constraint,) = [c for c in built.solver.problem.constraints if c.key == "inequality_first_norm"]
    assert constraint.target.reads == ("parameters",) and not constraint.target.needs_batch
    expected = built.model.first.eq.weight.detach().norm()
    record = built.solver.step(next(iter(built.train_loader)))
    assert torch.allclose(record.values["inequality_first_norm"], expected.reshape(1))
    assert torch.allclose(record.violations["inequality_first_norm"], expected.reshape(1) - 1.5)


def test_a_module_that_raises_on_import_is_named(lab):
    (lab / "labmodels" / "broken.py").write_text("raise RuntimeError('no GPU here')\n")
    path = _edit(lab, "labmodels.nets:vector_mlp", "labmodels.broken:net")
    with pytest.raises(ProblemFileError, match=r"bad\.yaml:5: 'model\.name': cannot import the model "
                                               r"'labmodels\.broken:net': importing 'labmodels\.broken' raised "
                                               r"RuntimeError: no GPU here"):
        load_problem_file(path)


def test_a_model_factory_that_returns_no_module_fails_before_training(lab):
    (lab / "labmodels" / "nets.py").write_text((lab / "labmodels" / "nets.py").read_text()
                                               + "\n\ndef numbers(hidden=1):\n    return [hidden]\n")
    spec = load_problem_file(_edit(lab, "labmodels.nets:vector_mlp", "labmodels.nets:numbers"))
    with pytest.raises(ProblemFileError, match=r"bad\.yaml:5: 'model\.name': Expected the model "
                                               r"'labmodels\.nets:numbers' to return a torch\.nn\.Module \(got a list\)"):
        build(spec)


def test_import_paths_are_recognised_and_quoted():
    assert is_import_path("a.b:c") and is_import_path("a:b.c") and is_import_path("torch.optim:RAdam")
    assert not any(map(is_import_path, ["adam", "a.b", "a:b:c", ":c", "a.b:", "a b:c", 3, None]))
    assert quote_import_paths("Inequality(a.b:c, bound=1.0)") == "Inequality('a.b:c', bound=1.0)"
    assert quote_import_paths("Equality(target=gammas)") == "Equality(target=gammas)"
    with pytest.raises(ImportPathError, match="import path"):
        from constrained_eq._utils.import_path import load_object
        load_object("not a path", "model")


def test_an_optimizer_factory_that_returns_no_optimizer_or_raises_names_the_file(lab):
    (lab / "labmodels" / "optim.py").write_text(
        "import torch\n\n\ndef plain(params, lr, weight_decay):\n    return [lr]\n\n\n"
        "def picky(params, lr, weight_decay):\n    raise ValueError(f'picky: lr {lr} is too large')\n")
    spec = load_problem_file(_rewrite(lab, "labmodels.optim:plain"))
    with pytest.raises(ProblemFileError, match=r"bad\.yaml:12: Expected the optimizer 'labmodels\.optim:plain' to "
                                               r"return a torch\.optim\.Optimizer \(got list\)"):
        build(spec)
    with pytest.raises(ProblemFileError, match=r"bad\.yaml: picky: lr 0\.01 is too large"):
        build(load_problem_file(_rewrite(lab, "labmodels.optim:picky")))


def _rewrite(folder: Path, optimizer: str) -> Path:
    text = (folder / "lab.yaml").read_text().replace("torch.optim:RAdam", optimizer)
    (folder / "bad.yaml").write_text(text.replace("  options: {betas: [0.9, 0.99]}\n", ""))
    return folder / "bad.yaml"
