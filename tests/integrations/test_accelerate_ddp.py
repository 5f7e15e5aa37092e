"""The Solver on objects prepared by Accelerate, on two CPU processes (gloo, launched by torchrun).

* both ranks hold the same θ, γ, λ and u, bitwise;
* the run takes the global batches of docs/distributed.md's torchrun loop for the same seed and ends at its
  θ, γ, λ, u up to float rounding (each rank holds other samples of a global batch, so the sums differ in
  order);
* a run restarted from ``accelerator.save_state`` with ``load_state`` takes the uninterrupted run's steps.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.distributed as dist
from _torchrun import run_two_ranks

WORKER = Path(__file__).with_name("accelerate_worker.py")

pytestmark = pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(),
                                reason="torch.distributed with gloo is not available")


@pytest.fixture(scope="module")
def ranks(tmp_path_factory) -> list[dict]:
    out = tmp_path_factory.mktemp("accelerate_ddp")
    return run_two_ranks(WORKER, out)


def test_the_prepared_model_is_ddp_and_ranks_hold_the_same_duals_and_weights(ranks):
    run = ranks[0]["accelerate"]
    assert ranks[0]["world_size"] == 2 and run["wrapped"] == "DistributedDataParallel"
    for key, (on_rank0, on_rank1) in run["final"].items():
        assert torch.equal(on_rank0, on_rank1), key
    for (_, lambdas0), (_, lambdas1) in zip(run["records"], ranks[1]["accelerate"]["records"], strict=True):
        assert all(torch.equal(lambdas0[k], lambdas1[k]) for k in lambdas0)  # λ agrees at every step
    assert run["final"]["lambda"][0].abs().sum() > 0 and run["final"]["u"][0].abs().sum() > 0


def test_accelerate_takes_the_global_batches_and_trajectory_of_torchrun(ranks):
    run, reference = ranks[0]["accelerate"], ranks[0]["torchrun"]
    assert run["batches"] == reference["batches"] and len(run["batches"]) == 16
    assert all(len(b) == 16 and len(set(b)) == 16 for b in run["batches"])  # two ranks' disjoint halves
    for key, parts in run["final"].items():
        assert torch.allclose(parts[0], reference["final"][key][0], rtol=1e-10, atol=1e-12), key
    for (_, lambdas), (_, ref_lambdas) in zip(run["records"], reference["records"], strict=True):
        assert all(torch.allclose(lambdas[k], ref_lambdas[k], rtol=1e-10, atol=1e-12) for k in lambdas)

    def global_losses(name):  # a rank's loss is its half's: the mean over ranks is the global batch's
        return torch.stack([torch.stack([loss for loss, _ in rank[name]["records"]]) for rank in ranks]).mean(0)

    assert torch.allclose(global_losses("accelerate"), global_losses("torchrun"), rtol=1e-10, atol=1e-12)


def test_load_state_resumes_the_uninterrupted_run_bitwise(ranks):
    for rank in ranks:
        run, resumed = rank["accelerate"], rank["resumed"]
        assert resumed["step_after_load"] == 8  # the Solver's step count came back with its state
        assert resumed["batches"] == run["batches"][8:]
        for (loss, lambdas), (ref_loss, ref_lambdas) in zip(resumed["records"], run["records"][8:], strict=True):
            assert torch.equal(loss, ref_loss) and all(torch.equal(lambdas[k], ref_lambdas[k]) for k in lambdas)
        for key, parts in run["final"].items():
            assert all(torch.equal(a, b) for a, b in zip(parts, resumed["final"][key], strict=True)), key
