"""Problem-file keys of the N-body science runs: `dual_optimizer` and the SEGNN `placement`."""

import cooper
import pytest
import torch
from _toy import TOY_DATA

from constrained_eq.models.segnn import SEGNNProductBranch
from constrained_eq.run.build import build
from constrained_eq.run.problem_file import load_problem_file

TOY = TOY_DATA + """\
constraints:
  - Equality(target=gammas)
formulation: lagrangian
training:
  epochs: 1
  batch_size: 16
"""

SEGNN = """\
task:
  name: nbody
  options: {n_train: 4, n_val: 4, n_test: 4, root: ROOT}
model:
  name: segnn
  options: {hidden_nf: 8, n_layers: 1, placement: ace}
strategy: ace_equality
dual_optimizer: nupi
training:
  batch_size: 2
"""


def _write(tmp_path, text):
    path = tmp_path / "p.yaml"
    path.write_text(text.replace("ROOT", str(tmp_path / "cache")))
    return path


def test_dual_optimizer_defaults_to_sgd_and_takes_nupi_gains(tmp_path):
    assert load_problem_file(_write(tmp_path, TOY))["dual_optimizer"] == {"name": "sgd", "options": {}}
    text = TOY + "dual_optimizer:\n  name: nupi\n  options: {kappa_p: 5, kappa_i: 0.5}\n"
    spec = load_problem_file(_write(tmp_path, text))
    assert spec["dual_optimizer"] == {"name": "nupi", "options": {"kappa_p": 5, "kappa_i": 0.5}}
    dual = build(spec).solver.optimizer.dual_optimizers[0]
    assert isinstance(dual, cooper.optim.nuPI)
    assert float(dual.param_groups[0]["Kp"]) == 5.0 and float(dual.param_groups[0]["Ki"]) == 0.5


@pytest.mark.parametrize(("extra", "line", "message"), [
    ("dual_optimizer: adam\n", 13, "Expected 'dual_optimizer.name' to be one of 'sgd', 'nupi' (got 'adam')"),
    ("dual_optimizer: {name: nupi, options: {kappa_p: -1}}\n", 13,
     "Expected 'dual_optimizer.options' to be kappa_p, kappa_i, ema_nu: NuPI: expected 'kappa_p' to be a finite"),
    ("dual_optimizer: {name: nupi, options: {gain: 1}}\n", 13, "Expected 'dual_optimizer.options' to be kappa_p"),
    ("dual_optimizer: {name: sgd, options: {kappa_p: 1}}\n", 13, "dual optimizer 'sgd' takes none"),
])
def test_bad_dual_optimizer_names_file_and_line(tmp_path, extra, line, message):
    path = _write(tmp_path, TOY + extra)
    with pytest.raises(ValueError) as info:
        load_problem_file(path)
    assert str(info.value).startswith(f"{path}:{line}: ") and message in str(info.value), str(info.value)


def test_segnn_ace_placement_and_nupi_from_the_problem_file(tmp_path):
    built = build(load_problem_file(_write(tmp_path, SEGNN)))
    layer = built.model.layers[0]
    assert isinstance(layer.message_layer_1.neq, SEGNNProductBranch)
    assert isinstance(built.solver.optimizer.dual_optimizers[0], cooper.optim.nuPI)
    assert built.solver.step(next(iter(built.train_loader))).multipliers["equality_gammas"].shape == (2,)


def test_unknown_segnn_placement_names_file_and_line(tmp_path):
    path = _write(tmp_path, SEGNN.replace("placement: ace", "placement: everywhere"))
    with pytest.raises(ValueError) as info:
        build(load_problem_file(path))
    text = str(info.value)
    assert text.startswith(f"{path}:6: ") and "Expected 'placement' to be one of 'cr', 'ace'" in text, text


def test_fused_adam_from_the_problem_file_follows_the_default_adam(tmp_path):
    """`optimizer.options: {fused: true}` (benchmarks/primal_optimizer.py): the same update law to float rounding."""
    runs = {}
    for fused in (False, True):
        spec = load_problem_file(_write(tmp_path, TOY + f"optimizer:\n  name: adam\n  lr: 0.01\n  options: {{fused: {str(fused).lower()}}}\n"))
        built = build(spec)
        assert built.solver.optimizer.primal_optimizers[0].param_groups[0]["fused"] is fused
        batch = next(iter(built.train_loader))
        start = [p.detach().clone() for p in built.model.parameters()]
        for _ in range(3):
            built.solver.step(batch)
        runs[fused] = [p.detach().clone() for p in built.model.parameters()]
        assert any(not torch.equal(a, b) for a, b in zip(start, runs[fused], strict=True))  # the steps moved θ
    for a, b in zip(runs[False], runs[True], strict=True):
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-6)
