"""SolverModule under ``Trainer(strategy="ddp")`` on two CPU processes (gloo, launched by torchrun).

Both ranks end with the same θ, γ, λ and u, bitwise, and with those of the plain torchrun loop of
docs/distributed.md on the same shards (DDP's mean over two ranks and the Solver's are the same sums);
the validation columns, summed over both ranks' shards, are the whole split's.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.distributed as dist
from _torchrun import run_two_ranks

WORKER = Path(__file__).with_name("lightning_ddp_worker.py")

pytestmark = pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(),
                                reason="torch.distributed with gloo is not available")


@pytest.fixture(scope="module")
def ranks(tmp_path_factory) -> list[dict]:
    out = tmp_path_factory.mktemp("lightning_ddp")
    return run_two_ranks(WORKER, out)


def test_both_ranks_hold_the_same_theta_gamma_lambda_and_u(ranks):
    assert ranks[0]["world_size"] == 2
    for key, (on_rank0, on_rank1) in ranks[0]["lightning"].items():
        assert torch.equal(on_rank0, on_rank1), key
    assert ranks[0]["lightning"]["lambda"][0].abs().sum() > 0 and ranks[0]["lightning"]["u"][0].abs().sum() > 0


def test_lightning_ddp_takes_the_steps_of_the_torchrun_loop(ranks):
    for key, parts in ranks[0]["lightning"].items():
        assert all(torch.equal(a, b) for a, b in zip(parts, ranks[0]["plain"][key], strict=True)), key


def test_validation_is_measured_over_the_whole_split_on_every_rank(ranks):
    logged = [r["logged"] for r in ranks]
    assert logged[0] == logged[1]
    measured = ranks[0]["measured"]
    assert set(measured) <= set(logged[0]) and "val_feasible" in logged[0]
    assert any(v != 0 for v in measured.values())
    for key, value in measured.items():
        assert logged[0][key] == pytest.approx(value, rel=1e-6, abs=1e-7), key
