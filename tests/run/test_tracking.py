"""TensorBoard logs (``logging: {tensorboard: true}``) and the tables ``ceq compare`` saves."""

from __future__ import annotations

import csv
import json
import sys

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # the 'test' extra has it

from constrained_eq.run.cli import main
from constrained_eq.run.tracking import TB_FOLDER, flat_hparams, tag_of
from constrained_eq.training.run_folder import load_checkpoint

TOY = """task:
  name: toy_rotation
  options: {n_train: 32, n_val: 16, n_test: 16, breaking: 0.2}
model:
  name: vector_net
  options: {hidden: 4, n_layers: 2}
strategy: ace_resilient
optimizer: {lr: 1e-2}
dual_lr: 5e-2
training: {epochs: 3, batch_size: 16}
logging:
  tensorboard: true
"""


def _file(tmp_path, text=TOY):
    path = tmp_path / "toy.yaml"
    path.write_text(text)
    return path


def test_tensorboard_holds_every_history_column_gamma_and_hparams(tmp_path):
    assert main(["run", str(_file(tmp_path)), "--quiet", "--out", str(tmp_path / "runs")]) == 0
    run = tmp_path / "runs" / "toy"
    events = EventAccumulator(str(run / TB_FOLDER))
    events.Reload()
    rows = list(csv.DictReader(open(run / "history.csv")))
    assert len(rows) == 3
    logged = set(events.Tags()["scalars"])
    for column in rows[0]:
        if column == "epoch":
            continue
        series = events.Scalars(tag_of(column))
        assert [e.step for e in series] == [0, 1, 2]
        expected = torch.tensor([float(r[column]) for r in rows], dtype=torch.float32)
        assert torch.equal(torch.tensor([e.value for e in series], dtype=torch.float32), expected), column
    #    , and the validation equivariance error, are among them
    assert {"constraints/equality_gammas/lambda/0", "constraints/equality_gammas/u/1", "val/equivariance_error",
            "loss/train"} <= logged
    # γ at the last epoch is the γ of the checkpoint written at the end of that epoch
    model_state = load_checkpoint(run / "checkpoint.pt")["solver"]["model"]
    gammas = [v for k, v in model_state.items() if k.endswith("gamma")]
    assert len(gammas) == 2
    for index, gamma in enumerate(gammas):
        assert events.Scalars(f"gamma/{index}")[-1].value == pytest.approx(float(gamma), abs=1e-7)
    hparams = EventAccumulator(str(run / TB_FOLDER / "hparams"))
    hparams.Reload()
    assert hparams.PluginTagToContent("hparams")  # the HParams tab's experiment and session records
    summary = json.loads((run / "metrics.json").read_text())
    assert hparams.Scalars("best/val_loss")[0].value == pytest.approx(summary["best"]["val_loss"], rel=1e-6)
    assert hparams.Scalars("test_projected/loss")[0].value == pytest.approx(summary["test_projected"]["loss"],
                                                                             rel=1e-6)


def test_csv_only_by_default(tmp_path):
    text = TOY.replace("logging:\n  tensorboard: true\n", "").replace("epochs: 3", "epochs: 1")
    assert main(["run", str(_file(tmp_path, text)), "--quiet", "--out", str(tmp_path / "runs")]) == 0
    assert (tmp_path / "runs" / "toy" / "history.csv").exists()
    assert not (tmp_path / "runs" / "toy" / TB_FOLDER).exists()


def test_missing_tensorboard_names_the_extra_before_any_work(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "tensorboard", None)  # `import tensorboard` now fails
    path = _file(tmp_path)
    assert main(["run", str(path), "--quiet", "--out", str(tmp_path / "runs")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"ceq: error: {path}:12: logging.tensorboard needs the 'tensorboard' package: pip install "
                          "'constrained_eq[tensorboard]'") and err.count("\n") == 1
    assert not (tmp_path / "runs").exists()


def test_flat_hparams_and_tags():
    spec = {"optimizer": {"lr": 5e-3, "options": {"betas": [0.9, 0.99]}}, "strategy": "cr", "file": "x.yaml",
            "lines": {"a": 1}, "constraints": ["Equality(target=gammas)"]}
    assert flat_hparams(spec) == {"optimizer.lr": 5e-3, "optimizer.options.betas": "[0.9, 0.99]", "strategy": "cr",
                                  "constraints": "['Equality(target=gammas)']"}
    # only the top level's location keys are the loader's: an option of that name inside a section is a setting
    assert flat_hparams({"task": {"name": "lab", "options": {"file": "data.csv", "lines": 3}}, "lines": {"task": 1}}) \
        == {"task.name": "lab", "task.options.file": "data.csv", "task.options.lines": 3}
    assert tag_of("resilient_gammas.slack.3") == "constraints/resilient_gammas/u/3"
    assert tag_of("val_branch.contribution.1") == "val/branch/contribution/1" and tag_of("epoch") is None


def test_compare_saves_csv_and_markdown(tmp_path, capsys):
    text = TOY.replace("logging:\n  tensorboard: true\n", "").replace("epochs: 3", "epochs: 1")
    out = tmp_path / "runs"
    assert main(["compare", str(_file(tmp_path, text)), "--strategies", "vanilla,ace_equality", "--quiet",
                 "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    rows = list(csv.reader(open(out / "compare.csv")))
    assert rows[0] == ["file", "strategy", "formulation", "best val", "test (projected)", "test (unprojected)",
                       "seconds"]
    assert [r[1:3] for r in rows[1:]] == [["vanilla", "none"], ["ace_equality", "lagrangian"]]
    for row in rows[1:]:  # the saved values are the ones in each run's metrics.json
        summary = json.loads((out / f"toy-{row[1]}" / "metrics.json").read_text())
        assert row[4] == f"{summary['test_projected']['loss']:.4g}" and row[4] in printed
    markdown = (out / "compare.md").read_text().splitlines()
    assert markdown[0] == "| " + " | ".join(rows[0]) + " |" and markdown[1] == "|" + "---|" * 7
    assert markdown[2:] == ["| " + " | ".join(r) + " |" for r in rows[1:]]
    assert f"wrote {out / 'compare.csv'}" in printed
