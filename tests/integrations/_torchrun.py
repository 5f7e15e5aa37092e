"""Run a worker script on two CPU processes under torchrun (gloo) and read back what each rank saved."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]


def run_two_ranks(worker: Path, out: Path) -> list[dict]:
    """``torchrun --nproc_per_node=2 worker out``; each rank writes ``out/rank<r>.pt``, returned in rank order."""
    env = dict(os.environ, GLOO_SOCKET_IFNAME="lo", OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), str(worker.parent), env.get("PYTHONPATH")]))
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                           str(worker), str(out)], cwd=out, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"{done.stdout}\n{done.stderr}"
    return [torch.load(out / f"rank{r}.pt", weights_only=False) for r in range(2)]
