"""``ceq run`` under ``torchrun``: ranks agree bitwise, N ranks equal one rank, rank 0 alone writes, resume.

The CLI cases launch real ``torchrun`` jobs (``python -m torch.distributed.run --standalone``, gloo on
loopback). Under torchrun the shuffle is ``DistributedSampler``'s, so a 1-process torchrun run sees
the same global batches as a 2-process one: their final θ, γ and λ must agree to float tolerance.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

import constrained_eq as ceq
from constrained_eq._utils import distributed
from constrained_eq.run.build import build
from constrained_eq.run.problem_file import load_problem_file
from constrained_eq.run.problem_yaml import ProblemFileError
from constrained_eq.training.loop import fit

ROOT = Path(__file__).resolve().parents[2]
TOY = ROOT / "problems" / "toy.yaml"
EPOCHS = 3
TIMEOUT = timedelta(seconds=60)  # a deadlock between ranks fails the test instead of hanging it

pytestmark = pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(),
                                reason="torch.distributed with gloo is not available")


def _env() -> dict[str, str]:
    env = dict(os.environ, GLOO_SOCKET_IFNAME="lo", OMP_NUM_THREADS="1")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


def _torchrun(nproc: int, out: Path, *extra: str, problem: Path = TOY, env: dict | None = None):
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
               "-m", "constrained_eq.run.cli", "run", str(problem), "--out", str(out), "--quiet", "--epochs", str(EPOCHS),
               *extra]
    return subprocess.run(command, env={**_env(), **(env or {})}, capture_output=True, text=True, timeout=300)


def _solver_state(run: Path) -> dict[str, torch.Tensor]:
    state = torch.load(run / "checkpoint.pt", weights_only=True)["solver"]
    flat = {f"model.{k}": v for k, v in state["model"].items()}
    flat.update({f"lambda.{k}": m["weight"] for k, m in state["cmp"]["multipliers"].items()})
    return flat


@pytest.fixture(scope="module")
def two_and_one(tmp_path_factory):
    """One 2-process and one 1-process torchrun of the toy problem (ACE, γ = 0 by dual ascent)."""
    out = tmp_path_factory.mktemp("torchrun")
    runs = {n: _torchrun(n, out / f"n{n}") for n in (2, 1)}
    for n, done in runs.items():
        assert done.returncode == 0, f"{n} processes:\n{done.stdout}\n{done.stderr}"
    return out, runs


def test_two_ranks_agree_bitwise_and_write_the_run_folder_once(two_and_one):
    out, runs = two_and_one
    run = out / "n2" / "toy"
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["distributed"] == {"world_size": 2, "backend": "gloo", "max_rank_difference": 0.0}
    history = (run / "history.csv").read_text().strip().splitlines()
    assert len(history) == 1 + EPOCHS  # header + one row per epoch: one writer, not two
    assert runs[2].stdout.count("run folder:") == 1  # only rank 0 reports
    assert "torchrun: 2 processes (gloo); training.batch_size is the global batch" in runs[2].stdout
    assert metrics["test_projected"]["equivariance_error"] < 1e-5


def test_two_ranks_equal_one_rank_on_the_same_global_batches(two_and_one):
    out, _ = two_and_one
    two, one = _solver_state(out / "n2" / "toy"), _solver_state(out / "n1" / "toy")
    assert two.keys() == one.keys() and not any(k.startswith("model.module.") for k in two)  # bare-module keys
    for key in two:
        torch.testing.assert_close(two[key], one[key], rtol=1e-4, atol=1e-5, msg=lambda m, key=key: f"{key}: {m}")
    assert two["lambda.equality_gammas"].abs().min() > 0.1  # the duals did move


def test_a_refused_run_fails_on_every_rank_without_hanging(two_and_one):
    out, _ = two_and_one
    again = _torchrun(2, out / "n2")  # the folder holds a run: rank 0 refuses, rank 1 must not wait forever
    assert again.returncode != 0
    assert "already holds a run; pass --resume" in again.stderr


def test_compare_under_torchrun_trains_cr_and_resilient_on_both_ranks(tmp_path):
    """``ceq compare`` too; CR's frozen γ stays outside DDP, the resilient slack u is averaged."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
               "-m", "constrained_eq.run.cli", "compare", str(TOY), "--strategies", "cr,ace_resilient", "--out",
               str(tmp_path), "--quiet", "--epochs", "1"]
    done = subprocess.run(command, env=_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("test (projected)") == 1  # one table, from rank 0
    for strategy in ("cr", "ace_resilient"):
        metrics = json.loads((tmp_path / f"toy-{strategy}" / "metrics.json").read_text())
        assert metrics["distributed"]["max_rank_difference"] == 0.0, strategy


def test_nbody_egnn_with_the_lie_penalty_under_torchrun(tmp_path):
    """A graph task (custom collate), a model with parameters the loss never uses, CR's Lie penalty."""
    text = (ROOT / "problems" / "nbody_quick.yaml").read_text()
    text = text.replace("n_train: 500", "n_train: 100").replace("n_val: 200", "n_val: 20")
    problem = tmp_path / "nbody_small.yaml"
    problem.write_text(text.replace("n_test: 200", "n_test: 20").replace("hidden_nf: 32", "hidden_nf: 8"))
    done = _torchrun(2, tmp_path / "runs", "--strategy", "cr", problem=problem, env={"CEQ_CACHE": str(tmp_path)})
    assert done.returncode == 0, done.stderr
    metrics = json.loads((tmp_path / "runs" / "nbody_small-cr" / "metrics.json").read_text())
    assert metrics["distributed"]["max_rank_difference"] == 0.0
    assert metrics["test_projected"]["equivariance_error"] < 1e-4


class _Context:
    world_size = 3


def test_a_global_batch_not_divisible_by_the_world_size_is_refused_before_training(tmp_path):
    from constrained_eq.run.problem_file import load_problem
    from constrained_eq.run.runner import _check_world_size

    spec = load_problem(TOY, {})
    with pytest.raises(ProblemFileError, match=r"toy.yaml:\d+: Expected 'training.batch_size' \(32\) to be a "
                                               r"multiple of the number of processes \(3\)"):
        _check_world_size(spec, _Context())


def test_solver_refuses_a_ddp_model_under_the_schedule_formulation(tmp_path):
    dist.init_process_group("gloo", store=dist.FileStore(str(tmp_path / "store"), 1), rank=0, world_size=1)
    try:
        model = nn.parallel.DistributedDataParallel(
            nn.Sequential(ceq.HomotopicLayer(nn.Identity(), ceq.LinearBranch(2, 2))))
        problem = ceq.ConstrainedProblem(lambda out, batch: out.pow(2).mean(), [ceq.Equality(ceq.gammas)])
        with pytest.raises(ValueError, match="build the Solver on the bare model and wrap it afterwards"):
            ceq.Solver(problem, model, "schedule", epochs=4)
    finally:
        dist.destroy_process_group()


# ---------------------------------------------------------------------- spawned 2-rank jobs
def _entry(rank: int, job, store: str, out: str) -> None:
    """Join a 2-rank gloo group, run ``job(context, out_dir)`` and save rank 0's result in ``out/result.pt``."""
    torch.set_num_threads(1)
    os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
    dist.init_process_group("gloo", store=dist.FileStore(store, 2), rank=rank, world_size=2, timeout=TIMEOUT)
    try:
        result = job(distributed.Context(rank, rank, 2, torch.device("cpu"), "gloo"), Path(out))
        if rank == 0:
            torch.save(result, Path(out) / "result.pt")
        dist.barrier()
    finally:
        distributed.destroy()  # frees the job's Solver/DDP reference cycle while the group lives


def _spawn(job, tmp_path: Path):
    mp.spawn(_entry, args=(job, str(tmp_path / "store"), str(tmp_path)), nprocs=2, join=True)
    return torch.load(tmp_path / "result.pt", weights_only=False)


def _resume_job(context: distributed.Context, out_dir: Path) -> dict:
    spec = load_problem_file(TOY, {"training.epochs": 2})

    def run(epochs: int, folder: str, resume: bool = False):
        built = build(spec, "cpu", context)
        fit(built.solver, built.train_loader, None, epochs=epochs, run_dir=out_dir / folder, resume=resume,
            progress=False)
        dist.barrier()  # rank 0 has written the checkpoint before anyone reads it
        return built.solver.state_dict()

    run(1, "interrupted")
    return {"resumed": run(2, "interrupted", resume=True), "straight": run(2, "straight")}


def test_a_resumed_two_rank_run_equals_an_uninterrupted_one(tmp_path):
    states = _spawn(_resume_job, tmp_path)
    resumed, straight = states["resumed"], states["straight"]
    assert resumed["step"] == straight["step"] == 2 * 256 // 32
    for key, value in straight["model"].items():
        assert torch.equal(resumed["model"][key], value), key
    for key, value in straight["cmp"]["multipliers"].items():
        assert torch.equal(resumed["cmp"]["multipliers"][key]["weight"], value["weight"]), key


def test_fit_reshuffles_the_distributed_sampler_every_epoch():
    from torch.utils.data import DataLoader, DistributedSampler, TensorDataset

    from constrained_eq.run.build import AugmentedLoader
    from constrained_eq.training.loop import set_sampler_epoch

    data = TensorDataset(torch.arange(12.0))
    loader = DataLoader(data, batch_size=2, sampler=DistributedSampler(data, num_replicas=2, rank=0, seed=1))
    orders = []
    for epoch in range(2):
        set_sampler_epoch(AugmentedLoader(loader, lambda b: b), epoch)  # through the augmentation wrapper too
        orders.append(torch.cat([b[0] for b in loader]).tolist())
    assert loader.sampler.epoch == 1 and orders[0] != orders[1]


# ---------------------------------------------------------------------- a NaN on one rank (spawned)
class _WithUnused(nn.Module):
    """A relaxed model with a parameter the loss never uses (as EGNN's last node MLP)."""

    def __init__(self) -> None:
        super().__init__()
        self.layer = ceq.HomotopicLayer(nn.Linear(3, 3), ceq.LinearBranch(3, 3))
        self.unused = nn.Linear(3, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer(x)


def _nan_job(context: distributed.Context, out_dir: Path) -> dict:
    torch.manual_seed(0)
    model = _WithUnused()
    problem = ceq.ConstrainedProblem(lambda out, b: (out - b).pow(2).mean(), [ceq.Equality(ceq.gammas)])
    solver = ceq.Solver(problem, model, "lagrangian", torch.optim.SGD(model.parameters(), lr=0.1), dual_lr=0.1,
                        on_nonfinite="skip")
    solver.model = distributed.wrap_model(model, context)
    skipped = []
    for step in range(6):
        batch = torch.full((4, 3), float(context.rank + step))
        if step == 2 and context.rank == 1:
            batch[0, 0] = float("nan")  # only rank 1's shard is bad
        skipped.append(solver.step(batch).skipped)
    state = torch.cat([p.detach().reshape(-1) for p in model.parameters()] + [solver.dual_parameters()[0].detach()])
    parts = [torch.empty_like(state) for _ in range(2)]
    dist.all_gather(parts, state)
    return {"skipped": skipped, "parts": parts}


def test_a_nan_on_one_rank_is_skipped_by_every_rank(tmp_path):
    result = _spawn(_nan_job, tmp_path)
    assert result["skipped"] == [False, False, True, False, False, False]  # rank 0 skipped rank 1's bad step
    assert torch.equal(result["parts"][0], result["parts"][1])
    assert torch.isfinite(result["parts"][0]).all()
