"""Malformed problem files are refused before training, naming the file, the line and the field.

Every case starts from the valid ``problems/toy.yaml``, applies one mutation, writes the file and runs
``load_problem_file`` + ``build``. Each must raise ``ProblemFileError``/``ValueError``/``TypeError``
(never another exception type) whose message starts with the file's path, names the field and,
when the field is in the file, its line. A hypothesis generator draws further mutations from the
same tables.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from constrained_eq.run.build import build
from constrained_eq.run.cli import main
from constrained_eq.run.problem_file import load_problem_file

ROOT = Path(__file__).resolve().parents[2]
TOY = yaml.safe_load((ROOT / "problems" / "toy.yaml").read_text())
TOY["task"]["options"].update(n_train=32, n_val=16, n_test=16)  # build stays cheap

Mutation = Callable[[dict], None]
Path_ = tuple[Any, ...]


def set_(path: Path_, value: Any) -> Mutation:
    def mutate(data: dict) -> None:
        node = data
        for key in path[:-1]:
            node = node.setdefault(key, {})
        node[path[-1]] = value
    return mutate


def del_(path: Path_) -> Mutation:
    def mutate(data: dict) -> None:
        node = data
        for key in path[:-1]:
            node = node[key]
        del node[path[-1]]
    return mutate


def _line_of(text: str, path: Path_) -> int | None:
    """1-based line of ``path`` (mapping keys and list indices) in PyYAML's block output."""
    lines = text.splitlines()
    start, indent = -1, 0
    for key in path:
        if isinstance(key, int):  # PyYAML writes list items at the indent of their key
            prefix = " " * (indent - 2) + "- "
            items = [n for n in range(start + 1, len(lines)) if lines[n].startswith(prefix)]
            if key >= len(items):
                return None
            start = items[key]
            continue
        for number in range(start + 1, len(lines)):
            line = lines[number]
            if len(line) - len(line.lstrip()) < indent and line.strip():
                return None
            if line.startswith(" " * indent + f"{key}:"):
                start, indent = number, indent + 2
                break
        else:
            return None
    return start + 1


def _write(tmp_path: Path, mutation: Mutation | str, name: str = "bad.yaml") -> tuple[Path, str]:
    path = tmp_path / name
    if isinstance(mutation, str):
        text = mutation
    else:
        data = copy.deepcopy(TOY)
        mutation(data)
        text = yaml.safe_dump(data, sort_keys=False, default_flow_style=False, allow_unicode=True)
    path.write_text(text, encoding="utf-8")
    return path, text


def _assert_refused(path: Path, text: str, field: str | None, line_path: Path_ | None) -> str:
    with pytest.raises((ValueError, TypeError)) as info:
        build(load_problem_file(path))
    message = str(info.value)
    assert message.startswith(f"{path}"), message
    if field is not None:
        assert f"'{field}" in message or f"{field}" in message, f"field {field!r} not named: {message}"
    if line_path is not None:
        line = _line_of(text, line_path)
        assert line is not None, (line_path, text)
        assert message.startswith(f"{path}:{line}: "), f"expected line {line}: {message}"
    return message


def _constraint(value: Any) -> Mutation:
    return set_(("constraints",), value)


NAN, INF = float("nan"), float("inf")
# (id, mutation, field named in the message, path whose line the message must give)
CASES: list[tuple[str, Mutation | str, str | None, Path_ | None]] = [
    # wrong types
    ("epochs-str", set_(("training", "epochs"), "ten"), "training.epochs", ("training", "epochs")),
    ("epochs-float", set_(("training", "epochs"), 2.5), "training.epochs", ("training", "epochs")),
    ("epochs-bool", set_(("training", "epochs"), True), "training.epochs", ("training", "epochs")),
    ("batch-list", set_(("training", "batch_size"), [32]), "training.batch_size", ("training", "batch_size")),
    ("seed-str", set_(("training", "seed"), "zero"), "training.seed", ("training", "seed")),
    ("lr-str", set_(("optimizer", "lr"), "fast"), "optimizer.lr", ("optimizer", "lr")),
    ("wd-str", set_(("optimizer", "weight_decay"), "none"), "optimizer.weight_decay", ("optimizer", "weight_decay")),
    ("project-str", set_(("evaluation", "project"), "yes"), "evaluation.project", ("evaluation", "project")),
    ("select-int", set_(("evaluation", "select"), 3), "evaluation.select", ("evaluation", "select")),
    ("training-scalar", set_(("training",), 5), "training", ("training",)),
    ("task-list", set_(("task",), ["toy_rotation"]), "task", ("task",)),
    ("task-options-list", set_(("task", "options"), [1, 2]), "task.options", ("task", "options")),
    ("model-options-str", set_(("model", "options"), "big"), "model.options", ("model", "options")),
    ("hidden-str", set_(("model", "options", "hidden"), "eight"), "model.options.hidden",
     ("model", "options", "hidden")),
    ("points-float", set_(("task", "options", "points"), 4.5), "task.options.points", ("task", "options", "points")),
    ("breaking-str", set_(("task", "options", "breaking"), "strong"), "task.options.breaking",
     ("task", "options", "breaking")),
    ("neq-std-str", set_(("model", "options", "neq_init_std"), "wide"), "model.options.neq_init_std",
     ("model", "options", "neq_init_std")),
    ("dual-lr-str", set_(("dual_lr",), "0.05x"), "dual_lr", ("dual_lr",)),
    ("on-nonfinite-bad", set_(("training", "on_nonfinite"), "ignore"), "training.on_nonfinite",
     ("training", "on_nonfinite")),
    # unknown keys at every level
    ("unknown-top", set_(("trainer",), {"epochs": 3}), "trainer", ("trainer",)),
    ("unknown-training", set_(("training", "epoch"), 3), "training.epoch", ("training", "epoch")),
    ("unknown-optimizer", set_(("optimizer", "momentum"), 0.9), "optimizer.momentum", ("optimizer", "momentum")),
    ("unknown-task", set_(("task", "size"), 3), "task.size", ("task", "size")),
    ("unknown-task-option", set_(("task", "options", "noise"), 0.1), "task.options.noise",
     ("task", "options", "noise")),
    ("unknown-model-option", set_(("model", "options", "width"), 3), "model.options.width",
     ("model", "options", "width")),
    ("unknown-evaluation", set_(("evaluation", "plots"), True), "evaluation.plots", ("evaluation", "plots")),
    ("unknown-formulation-option", set_(("formulation", "options"), {"rho": 1.0}), "formulation.options",
     ("formulation", "options")),
    # unknown names
    ("task-name", set_(("task", "name"), "toy"), "task.name", ("task", "name")),
    ("model-name", set_(("model", "name"), "mlp"), "model.name", ("model", "name")),
    ("strategy", set_(("strategy",), "ace"), "strategy", ("strategy",)),
    ("formulation-name", set_(("formulation", "name"), "lagrange"), "formulation.name", ("formulation", "name")),
    ("optimizer-name", set_(("optimizer", "name"), "rmsprop"), "optimizer.name", ("optimizer", "name")),
    ("variable-optimizer", set_(("variable_optimizer",), "adam"), "variable_optimizer", ("variable_optimizer",)),
    ("constraint-kind", _constraint(["Equalty(target=gammas)"]), "constraints[0]", ("constraints", 0)),
    ("constraint-target", _constraint(["Equality(target=betas)"]), "constraints[0]", ("constraints", 0)),
    ("constraint-mapping-kind", _constraint([{"kind": "Bound", "target": "gammas"}]), "constraints[0]",
     ("constraints", 0)),
    # missing required fields
    ("missing-task", del_(("task",)), "task", None),
    ("missing-model", del_(("model",)), "model", None),
    ("missing-task-name", del_(("task", "name")), "task.name", ("task",)),
    ("missing-model-name", del_(("model", "name")), "model.name", ("model",)),
    # negative / zero / NaN / inf numbers
    ("epochs-zero", set_(("training", "epochs"), 0), "training.epochs", ("training", "epochs")),
    ("epochs-negative", set_(("training", "epochs"), -3), "training.epochs", ("training", "epochs")),
    ("batch-zero", set_(("training", "batch_size"), 0), "training.batch_size", ("training", "batch_size")),
    ("batch-negative", set_(("training", "batch_size"), -32), "training.batch_size", ("training", "batch_size")),
    ("eval-every-zero", set_(("training", "eval_every"), 0), "training.eval_every", ("training", "eval_every")),
    ("checkpoint-every-neg", set_(("training", "checkpoint_every"), -1), "training.checkpoint_every",
     ("training", "checkpoint_every")),
    ("steps-every-zero", set_(("training", "steps_every"), 0), "training.steps_every", ("training", "steps_every")),
    ("lr-zero", set_(("optimizer", "lr"), 0), "optimizer.lr", ("optimizer", "lr")),
    ("lr-negative", set_(("optimizer", "lr"), -0.01), "optimizer.lr", ("optimizer", "lr")),
    ("lr-nan", set_(("optimizer", "lr"), NAN), "optimizer.lr", ("optimizer", "lr")),
    ("lr-inf", set_(("optimizer", "lr"), INF), "optimizer.lr", ("optimizer", "lr")),
    ("wd-negative", set_(("optimizer", "weight_decay"), -1e-4), "optimizer.weight_decay",
     ("optimizer", "weight_decay")),
    ("dual-lr-zero", set_(("dual_lr",), 0), "dual_lr", ("dual_lr",)),
    ("dual-lr-nan", set_(("dual_lr",), NAN), "dual_lr", ("dual_lr",)),
    ("dual-lr-neg-inf", set_(("dual_lr",), -INF), "dual_lr", ("dual_lr",)),
    ("variable-lr-zero", set_(("variable_lr",), 0), "variable_lr", ("variable_lr",)),
    ("variable-lr-inf", set_(("variable_lr",), INF), "variable_lr", ("variable_lr",)),
    ("breaking-nan", set_(("task", "options", "breaking"), NAN), "task.options.breaking",
     ("task", "options", "breaking")),
    ("gamma-init-inf", set_(("model", "options", "gamma_init"), INF), "model.options.gamma_init",
     ("model", "options", "gamma_init")),
    ("bound-lower-above-upper", _constraint(["Inequality(target=gammas, lower=0.2, bound=-0.1)"]), "constraints[0]",
     ("constraints", 0)),
    ("bound-nan", _constraint([{"kind": "Inequality", "target": "gammas", "bound": NAN}]), "constraints[0]",
     ("constraints", 0)),
    ("rho-zero", _constraint(["Resilient(target=gammas, rho=0)"]), "constraints[0]", ("constraints", 0)),
    ("rho-inf", _constraint([{"kind": "Resilient", "target": "gammas", "rho": INF}]), "constraints[0]",
     ("constraints", 0)),
    ("weight-negative", _constraint(["Penalty(target=gammas, weight=-1)"]), "constraints[0]", ("constraints", 0)),
    ("every-zero", _constraint(["Penalty(target=gammas, weight=0.1, every=0)"]), "constraints[0]",
     ("constraints", 0)),
    ("lie-every-with-bound", _constraint(["LieDerivative(bound=0.1, every=4)"]), "constraints[0]",
     ("constraints", 0)),
    ("formulation-rho-zero", lambda d: d.update(formulation={"name": "resilient", "options": {"rho": 0.0}},
                                                constraints=["Resilient(target=gammas, rho=1.0)"], strategy="custom"),
     "formulation.options.rho", ("formulation", "options", "rho")),
    ("schedule-shape", lambda d: d.update(formulation={"name": "schedule", "options": {"shape": "zigzag"}},
                                          strategy="custom"),
     "formulation.options.shape", ("formulation", "options", "shape")),
    # constraints that do not parse
    ("constraint-syntax", _constraint(["Equality(target="]), "constraints[0]", ("constraints", 0)),
    ("constraint-positional", _constraint(["Inequality(gammas, 0.1)"]), "constraints[0]", ("constraints", 0)),
    ("constraint-unknown-field", _constraint(["Equality(target=gammas, size=3)"]), "constraints[0]",
     ("constraints", 0)),
    ("constraint-call", _constraint(["Equality(target=__import__('os'))"]), "constraints[0]", ("constraints", 0)),
    ("constraint-int", _constraint([3]), "constraints[0]", ("constraints", 0)),
    ("constraints-str", _constraint("Equality(target=gammas)"), "constraints", ("constraints",)),
    ("constraint-lie-bad", _constraint(["LieDerivative(0.1)"]), "constraints[0]", ("constraints", 0)),
    # duplicated constraints
    ("constraint-duplicate", _constraint(["Equality(target=gammas)", "Equality(target=gammas)"]), "constraints[1]",
     ("constraints", 1)),
    ("constraint-duplicate-spelling", _constraint(["Equality(target=gammas)", {"kind": "Equality",
                                                                               "target": "gammas"}]),
     "constraints[1]", ("constraints", 1)),
    # formulations that do not fit the constraint kind
    ("penalty-only-lagrangian", lambda d: d.update(constraints=["Penalty(target=gammas, weight=0.1)"],
                                                   strategy="custom", formulation="resilient"),
     "constraints", ("constraints",)),
    ("ace-equality-only-penalties", lambda d: d.update(constraints=["Penalty(target=gammas, weight=0.1)"]),
     "constraints", ("constraints",)),
    ("lagrangian-no-constraints", lambda d: d.update(constraints=[], strategy="custom", formulation="lagrangian"),
     "constraints", ("constraints",)),
    # model options the model rejects
    ("hidden-zero", set_(("model", "options", "hidden"), 0), "model.options.hidden", ("model", "options", "hidden")),
    ("layers-zero", set_(("model", "options", "n_layers"), 0), "model.options.n_layers",
     ("model", "options", "n_layers")),
    ("layers-negative", set_(("model", "options", "n_layers"), -2), "model.options.n_layers",
     ("model", "options", "n_layers")),
    ("neq-std-negative", set_(("model", "options", "neq_init_std"), -1.0), "model.options.neq_init_std",
     ("model", "options", "neq_init_std")),
    ("points-zero", set_(("task", "options", "points"), 0), "task.options.points", ("task", "options", "points")),
    ("n-train-zero", set_(("task", "options", "n_train"), 0), "task.options.n_train",
     ("task", "options", "n_train")),
    ("n-val-negative", set_(("task", "options", "n_val"), -5), "task.options.n_val", ("task", "options", "n_val")),
    # selection column that would only fail after the first epoch
    ("select-unknown", set_(("evaluation", "select"), "val_accuracy"), "evaluation.select",
     ("evaluation", "select")),
    # whole-file mistakes
    ("yaml-syntax", "task: {name: toy_rotation\nmodel: [\n", None, None),
    ("yaml-list", "- task\n- model\n", None, None),
    ("yaml-empty", "", None, None),
    ("yaml-duplicate-key", (ROOT / "problems" / "toy.yaml").read_text() + "dual_lr: 0.1\n", "dual_lr", None),
]


def test_at_least_thirty_distinct_cases():
    assert len({case[0] for case in CASES}) == len(CASES) >= 30


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_malformed_problem_file_is_refused_before_training(tmp_path, case):
    _, mutation, field, line_path = case
    path, text = _write(tmp_path, mutation)
    _assert_refused(path, text, field, line_path)


def test_the_unmutated_file_builds(tmp_path):
    path, _ = _write(tmp_path, lambda d: None)
    built = build(load_problem_file(path))
    assert built.formulation == "lagrangian"


@pytest.mark.parametrize("case", ["epochs-zero", "constraint-duplicate", "hidden-zero", "select-unknown"])
def test_cli_refuses_before_training(tmp_path, monkeypatch, capsys, case):
    import constrained_eq.run.runner as build_module

    def no_training(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("training started")

    monkeypatch.setattr(build_module, "fit", no_training)
    _, mutation, field, line_path = next(c for c in CASES if c[0] == case)
    path, text = _write(tmp_path, mutation)
    assert main(["run", str(path), "--out", str(tmp_path / "runs"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"ceq: error: {path}:{_line_of(text, line_path)}: "), err
    assert field in err
    assert "Traceback" not in err


def test_cli_epochs_override_is_checked(tmp_path, capsys):
    path, _ = _write(tmp_path, lambda d: None)
    assert main(["run", str(path), "--out", str(tmp_path / "runs"), "--epochs", "0"]) == 2
    assert "Expected 'training.epochs' to be an integer in [1, 100000] (got 0)" in capsys.readouterr().err


# ----------------------------------------------------------------------------- generated mutations
BAD_VALUES: dict[Path_, list[Any]] = {
    ("training", "epochs"): [0, -1, 1.5, "x", None, NAN, [1], True],
    ("training", "batch_size"): [0, -8, 0.5, "32", INF, {"a": 1}, False],
    ("training", "eval_every"): [0, -1, "1"],
    ("training", "checkpoint_every"): [0, 2.0, "2"],
    ("training", "log_every"): [0, -10],
    ("training", "seed"): ["0", 0.5, None, [0]],
    ("optimizer", "lr"): [0, -1e-3, NAN, INF, -INF, "1e-3", None, True],
    ("optimizer", "weight_decay"): [-1.0, NAN, INF, "0"],
    ("optimizer", "name"): ["rmsprop", "", 3, None],
    ("dual_lr",): [0, -0.1, NAN, INF, "0.1", None, [0.1]],
    ("variable_lr",): [0, -1, NAN, INF, "fast"],
    ("strategy",): ["ace", "", 0, None, ["cr"]],
    ("variable_optimizer",): ["adam", 1, None],
    ("formulation", "name"): ["lagrange", "", 1],
    ("task", "name"): ["toy", "", 1, None],
    ("model", "name"): ["mlp", "", 2, None],
    ("task", "options", "points"): [0, -1, "4", 2.5, NAN],
    ("task", "options", "n_train"): [0, -1, "many"],
    ("task", "options", "breaking"): [NAN, INF, "x"],
    ("model", "options", "hidden"): [0, -4, "8", 8.5],
    ("model", "options", "n_layers"): [0, -1, "3"],
    ("model", "options", "gamma_init"): [NAN, INF, "1"],
    ("model", "options", "relaxed"): ["yes", 1],
    ("evaluation", "project"): ["true", 0],
    ("evaluation", "select"): ["val_nothing", 1, None],
    ("training", "on_nonfinite"): ["ignore", True, 0],
}
SECTIONS: list[Path_] = [(), ("task",), ("model",), ("training",), ("optimizer",), ("evaluation",),
                         ("task", "options"), ("model", "options"), ("formulation",)]
BAD_CONSTRAINTS = ["Equality(", "Equality(target=gammas", "Foo(target=gammas)", "Equality(target=nope)",
                   "Inequality(target=gammas, bound=-1)", "Resilient(target=gammas, rho=-1.0)",
                   "Resilient(target=gammas, rho=0)", "Penalty(target=gammas, weight=-0.5)",
                   "Equality(target=gammas, x=1)", "Inequality(gammas, 0.1)", "", "()", "1 + 1",
                   "Equality(target=open('x'))", "Equality(target=gammas)(1)"]


@st.composite
def mutations(draw: st.DrawFn) -> tuple[str, Mutation, Path_ | None]:
    kind = draw(st.sampled_from(["value", "unknown", "missing", "constraint", "duplicate"]))
    if kind == "value":
        path = draw(st.sampled_from(sorted(BAD_VALUES, key=str)))
        value = draw(st.sampled_from(BAD_VALUES[path]))
        field = ".".join(path)
        return field, set_(path, value), path
    if kind == "unknown":
        section = draw(st.sampled_from(SECTIONS))
        key = draw(st.from_regex(r"[a-z]{1,8}_zz", fullmatch=True))
        path = (*section, key)
        return ".".join(path), set_(path, draw(st.sampled_from([1, "x", None, 0.5, [1]]))), path
    if kind == "missing":
        path = draw(st.sampled_from([("task",), ("model",), ("task", "name"), ("model", "name")]))
        return ".".join(path), del_(path), None
    if kind == "constraint":
        text = draw(st.sampled_from(BAD_CONSTRAINTS))
        position = draw(st.integers(0, 1))
        items = ["Resilient(target=gammas, rho=1.0)"] if position else []
        items.insert(position, text)
        return f"constraints[{position}]", _constraint(items), ("constraints", position)
    text = draw(st.sampled_from(["Equality(target=gammas)", "Resilient(target=gammas, rho=1.0)"]))
    return "constraints[1]", _constraint([text, text]), ("constraints", 1)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(mutation=mutations())
def test_generated_mutations_are_refused(tmp_path, mutation):
    field, mutate, line_path = mutation
    path, text = _write(tmp_path, mutate, "generated.yaml")
    message = _assert_refused(path, text, field, None)
    line = _line_of(text, line_path) if line_path is not None else None
    if line is not None:
        assert message.startswith(f"{path}:{line}: "), message
