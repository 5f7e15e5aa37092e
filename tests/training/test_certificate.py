"""The certificate of the deployed model and the exit status (issue 28, items 3–4).

Every constraint is measured exactly on the model that is deployed and compared here with a measurement
made by hand from its final weights: SVD for spectral norms, a hand-weighted mean over the split for a data
target, γ = 0 for a projected model.
"""

import warnings

import pytest
import torch
from _toy import TOY_LAGRANGIAN, RelaxedMLP
from torch import nn

import constrained_eq as ceq
from constrained_eq.core.solver.feasibility import INFEASIBLE
from constrained_eq.run.cli import EXIT_INFEASIBLE, main
from constrained_eq.testing.toy_problems import VectorModel
from constrained_eq.training.certificate import certificate_lines
from constrained_eq.training.run_folder import load_checkpoint, read_json
from constrained_eq.training.settings import Selection


def _mlp():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 5), nn.ReLU(), nn.Linear(5, 2))


def _batches(sizes=(7, 3, 5)):
    generator = torch.Generator().manual_seed(1)
    return [(torch.randn(n, 3, generator=generator), torch.randn(n, 2, generator=generator)) for n in sizes]


def _mse(out, batch):
    return torch.nn.functional.mse_loss(out, batch[1])


def test_spectral_norms_are_certified_exactly_on_the_selected_weights(tmp_path):
    model = _mlp()
    problem = ceq.ConstrainedProblem(_mse, [ceq.Inequality(ceq.spectral_norms, bound=0.6, name="lipschitz")])
    solver = ceq.Solver(problem, model, "lagrangian", torch.optim.SGD(model.parameters(), 0.05), 0.5)
    result = ceq.fit(solver, _batches() * 4, _batches((4, 4)), epochs=3, run_dir=tmp_path / "run", progress=False,
                     selection=Selection(column="val_loss"))
    best = load_checkpoint(tmp_path / "run" / "best.pt")["model"]
    exact = [float(torch.linalg.svdvals(best[f"{i}.weight"].double())[0]) for i in (0, 2)]
    entry = result.certificate["constraints"]["lipschitz"]
    assert entry["values"] == pytest.approx(exact, rel=1e-5, abs=1e-6)
    assert entry["margins"] == pytest.approx([0.6 - s for s in exact], rel=1e-5, abs=1e-6)
    assert entry["violations"] == pytest.approx([max(s - 0.6, 0.0) for s in exact], rel=1e-5, abs=1e-6)
    held = all(s <= 0.6 + 1e-3 for s in exact)
    assert entry["holds"] is held and result.deployed_feasible is held
    assert result.violated == ([] if held else ["lipschitz"])
    assert entry["how"] == "exact (spectral_norms computed exactly)"
    assert read_json(tmp_path / "run" / "metrics.json")["certificate"] == result.certificate
    assert result.certificate["deployed"] == f"selected iterate of epoch {result.best_epoch}"


def test_a_data_target_is_certified_over_the_whole_split():
    model = _mlp()
    mean_output = ceq.Target(lambda m, batch, out: out.mean().reshape(1), "mean_output")
    problem = ceq.ConstrainedProblem(_mse, [ceq.Inequality(mean_output, bound=10.0)])
    solver = ceq.Solver(problem, model, "lagrangian", torch.optim.SGD(model.parameters(), 0.01), 0.1,
                        example_batch=_batches()[0])
    split = _batches((7, 3, 5))
    result = ceq.fit(solver, _batches(), split, epochs=1, progress=False, selection=Selection(column="val_loss"))
    with torch.no_grad():
        whole = torch.cat([model(x) for x, _ in split]).mean(1)  # per-sample means, weighted by batch size
    entry = result.certificate["constraints"]["inequality_mean_output"]
    assert result.certificate["split"] == "validation"
    assert entry["values"][0] == pytest.approx(float(whole.mean()), abs=1e-6)
    assert entry["margins"][0] == pytest.approx(10.0 - float(whole.mean()), abs=1e-6) and entry["holds"]


def test_gamma_constraints_of_a_projected_model_are_discharged_by_projection():
    model = RelaxedMLP()
    problem = ceq.ConstrainedProblem(_toy_loss, [ceq.Equality(ceq.gammas)])
    solver = ceq.Solver(problem, model, "lagrangian", torch.optim.Adam(model.parameters(), 1e-2), 1e-2)
    loader = [(torch.randn(8, 4), torch.randn(8, 2)) for _ in range(3)]
    projected = ceq.fit(solver, loader, loader, epochs=1, progress=False, selection=Selection(deploy="projected"))
    entry = projected.certificate["constraints"]["equality_gammas"]
    gammas = [float(g) for g in ceq.gammas(model).detach()]  # one epoch, selected = last iterate
    assert entry["how"] == "discharged by projection" and entry["values"] == [0.0, 0.0, 0.0]
    assert entry["before_projection"] == pytest.approx(gammas) and entry["holds"] and not entry["counted"]
    text = "\n".join(certificate_lines(projected.certificate))
    assert ("equality_gammas (Equality): discharged by projection: the deployed model is projected (f_θ,0), so "
            f"its γ = 0 exactly (before projection max|γ| = {max(abs(g) for g in gammas):.4g})") in text
    assert projected.certificate["deployed"] == "selected iterate of epoch 0, projected"
    selected = ceq.fit(solver, loader, loader, epochs=2, progress=False)
    entry = selected.certificate["constraints"]["equality_gammas"]
    assert entry["values"] == pytest.approx([float(g) for g in ceq.gammas(model).detach()]) and not entry["counted"]


def _toy_loss(out, batch):
    return torch.nn.functional.mse_loss(out, batch[1])


def test_fit_returns_the_facts_of_an_infeasible_problem():
    x0 = ceq.Target(lambda m: m.x[:1], "x0")
    problem = ceq.ConstrainedProblem(lambda out, batch: torch.sum(out**2),
                                     [ceq.Inequality(x0, bound=-1.0, name="x0 ≤ −1"), ceq.Inequality(x0, lower=1.0,
                                                                                                    name="x0 ≥ 1")])
    model = VectorModel(3, torch.ones(3))
    solver = ceq.Solver(problem, model, "lagrangian", torch.optim.SGD(model.parameters(), 3e-2), 0.1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = ceq.fit(solver, [None] * 800, epochs=2, progress=False)
    x = float(model.x.detach()[0])
    assert abs(x) < 0.05  # the pulls balance at 0: each constraint violated by ≈ 1
    assert result.likely_infeasible == ["x0 ≤ −1", "x0 ≥ 1"] and not result.ok
    assert result.violated == ["x0 ≤ −1", "x0 ≥ 1"] and result.deployed_feasible is False
    entries = result.certificate["constraints"]
    assert entries["x0 ≤ −1"]["margins"] == pytest.approx([-1.0 - x], abs=1e-6)
    assert entries["x0 ≥ 1"]["margins"] == pytest.approx([x - 1.0], abs=1e-6)
    assert entries["x0 ≥ 1"]["training"]["verdict"] == INFEASIBLE


LIPSCHITZ = """\
task:
  name: classification
  options: {n_train: 200, n_val: 100, n_test: 100}
model:
  name: mlp
  options: {hidden: 8, n_layers: 2}
constraints:
  - Inequality(target=spectral_norms, bound=0.05, name='lipschitz')
strategy: custom
formulation: {name: lagrangian}
optimizer: {name: sgd, lr: 0.01}
dual_lr: 0.01
training: {epochs: 1, batch_size: 50}
evaluation: {project: false, select: val_loss, equivariance_error: false}
"""


def test_ceq_run_exits_3_when_the_deployed_model_violates_a_hard_constraint(tmp_path, capsys):
    path = tmp_path / "lip.yaml"
    path.write_text(LIPSCHITZ)
    out = tmp_path / "runs"
    assert main(["run", str(path), "--out", str(out), "--quiet"]) == EXIT_INFEASIBLE == 3
    captured = capsys.readouterr()
    assert "ceq: the deployed model violates lipschitz; exit status 3 (pass --allow-infeasible for 0)" in captured.err
    assert "the deployed model VIOLATES hard constraint(s) lipschitz" in captured.out
    report = (out / "lip" / "constraint_report.txt").read_text()
    assert "certificate of the deployed model (selected iterate of epoch 0; measured exactly, data targets over " \
           "the whole test split" in report and "lipschitz (Inequality): VIOLATED" in report
    best = load_checkpoint(out / "lip" / "best.pt")["model"]
    certificate = read_json(out / "lip" / "metrics.json")["certificate"]
    exact = [float(torch.linalg.svdvals(w.double())[0]) for k, w in best.items() if k.endswith("weight")]
    assert certificate["constraints"]["lipschitz"]["values"] == pytest.approx(exact, rel=1e-5)
    assert main(["run", str(path), "--out", str(out), "--quiet", "--overwrite", "--allow-infeasible"]) == 0
    assert "(exit status 0: --allow-infeasible)" in capsys.readouterr().err
    assert main(["report", str(out / "lip")]) == 0
    assert "lipschitz (Inequality): VIOLATED" in capsys.readouterr().out


def test_ceq_run_of_a_projected_gamma_problem_exits_0_and_says_why(tmp_path, capsys):
    path = tmp_path / "p.yaml"
    path.write_text(TOY_LAGRANGIAN)
    assert main(["run", str(path), "--out", str(tmp_path / "runs"), "--quiet"]) == 0
    report = (tmp_path / "runs" / "p" / "constraint_report.txt").read_text()
    assert "not counted: equality_gammas, homotopy constraints on γ, which the deployed projection meets exactly" \
           in report
    assert "equality_gammas (Equality): discharged by projection: the deployed model is projected" in report


@pytest.mark.parametrize("excess, holds", [(-0.3e-3, True), (0.0, True), (0.4e-3, True), (0.9e-3, True),
                                           (1.3e-3, False), (0.05, False)])
def test_an_entry_holds_exactly_when_its_violation_is_within_the_tolerance(excess, holds):
    """v⁺ = [g − b]_+ ≤ τ holds (τ = 1e-3), v⁺ > τ does not; the margin is b − g."""
    from constrained_eq.training.certificate import certify

    model = nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        model.weight.fill_(2.0 + excess)
    weight = ceq.Target(lambda m: m.weight.reshape(1), "weight")
    problem = ceq.ConstrainedProblem(_mse, [ceq.Inequality(weight, bound=2.0, name="cap")])
    solver = ceq.Solver(problem, model, "lagrangian", torch.optim.SGD(model.parameters(), 0.1), 0.1)
    entry = certify(solver, model, tolerance=1e-3).constraints["cap"]
    assert entry["holds"] is holds
    assert entry["violations"][0] == pytest.approx(max(excess, 0.0), abs=1e-7)
    assert entry["margins"][0] == pytest.approx(-excess, abs=1e-7)
