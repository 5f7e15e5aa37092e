"""Resilient constraints find the layer that breaks SO(3) on the broken-chain family (short runs)."""

import numpy as np
import torch

from benchmarks.partial_symmetry import ChainConfig, fit_chain
from constrained_eq.data.broken_chain import make_broken_chain
from constrained_eq.models.vn_chain import VNChain
from constrained_eq.run.diagnostics import slack_ranking
from constrained_eq.run.report import build_report, symmetry_report
from constrained_eq.symmetry import SO, VectorRep, equivariance_error

CFG = dict(layers=3, depth=2, n_train=256, n_val=128, epochs=100)


def test_symmetric_data_and_projected_model_are_exactly_equivariant():
    data = make_broken_chain(16, 8, eps=0.0)
    net = VNChain(4, 3, gamma_init=0.0)
    for f in (data.teacher, net):
        assert equivariance_error(f, data.x_val, SO(3), act_in=VectorRep(4)) < 1e-5
    assert equivariance_error(make_broken_chain(16, 8, eps=0.5).teacher, data.x_val, SO(3), act_in=VectorRep(4)) > 0.1


def test_resilient_gives_the_injected_layer_the_largest_slack():
    torch.set_num_threads(1)
    run = fit_chain("resilient", ChainConfig(eps=0.5, **CFG), seed=0)
    assert slack_ranking(run.slack)[0] == CFG["depth"]
    assert run.slack[-1].max() > 0.05
    assert (run.slack >= 0).all() and (run.lam >= 0).all()


def test_symmetric_data_keeps_all_slacks_near_zero(tmp_path):
    torch.set_num_threads(1)
    run = fit_chain("resilient", ChainConfig(eps=0.0, **CFG), seed=0)
    assert run.slack[-1].max() < 0.05  # broken data: 0.1–0.35 at the injected layer
    assert np.abs(run.gamma[-1]).max() < 0.05
    report = build_report(run.gamma, run.lam, run.slack, rho=1.0)
    assert "resilient" in str(report) and len(report.layers) == 3
    # The history reader understands '<constraint>.<field>.<i>' columns.
    names = [f"equality_gammas.{f}.{i}" for f in ("gamma", "lambda", "slack") for i in range(3)]
    rows = np.concatenate([run.gamma, run.lam, run.slack], axis=1)
    (tmp_path / "history.csv").write_text(",".join(names + ["val_equivariance_error"]) + "\n" + "\n".join(
        ",".join(f"{v:.6g}" for v in row) + ",0.01" for row in rows))
    again = symmetry_report(tmp_path, rho=1.0)
    assert again.slack_ranking == report.slack_ranking and again.equivariance_error == 0.01
