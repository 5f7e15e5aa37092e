"""The training script of docs/distributed.md (its ``file=train_script.py`` block) runs as shown under torchrun."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch.distributed as dist
from test_docs import _file_of, blocks

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(),
                                reason="torch.distributed with gloo is not available")


def test_the_distributed_training_script_runs_as_shown_on_two_cpu_ranks(tmp_path):
    scripts = [code for _, words, code, _ in blocks(ROOT / "docs" / "distributed.md")
               if _file_of(words) == "train_script.py"]
    assert len(scripts) == 1, "docs/distributed.md should hold one ```python file=train_script.py block"
    (tmp_path / "train_script.py").write_text(scripts[0], encoding="utf-8")
    env = dict(os.environ, GLOO_SOCKET_IFNAME="lo", OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                           "train_script.py"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"{done.stdout}\n{done.stderr}"
    lines = [line for line in done.stdout.splitlines() if line.startswith("ranks ")]
    assert len(lines) == 1 and lines[0].startswith("ranks 2, loss ")  # rank 0 alone prints
    assert lines[0].endswith("max rank difference 0.0")  # the ranks hold the same γ and λ, bitwise
