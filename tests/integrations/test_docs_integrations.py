"""docs/integrations.md's Accelerate script (its ``file=fair_accelerate.py`` block) runs as shown on two CPU processes.

``accelerate launch --multi_gpu --num_processes 2`` starts two gloo processes on a machine without a GPU; the
script ends with every process holding the same weights and λ (its last line), and its ``save_state``
folder holds the Solver's state beside Accelerate's own files.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
from test_docs import _file_of, blocks

from constrained_eq.integrations.accelerate import SolverCheckpoint

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(),
                                reason="torch.distributed with gloo is not available")


def test_the_accelerate_script_runs_as_shown_on_two_cpu_processes(tmp_path):
    scripts = [code for _, words, code, _ in blocks(ROOT / "docs" / "integrations.md")
               if _file_of(words) == "fair_accelerate.py"]
    assert len(scripts) == 1, "docs/integrations.md should hold one ```python file=fair_accelerate.py block"
    (tmp_path / "fair_accelerate.py").write_text(scripts[0], encoding="utf-8")
    env = dict(os.environ, GLOO_SOCKET_IFNAME="lo", OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="",
               HF_HOME=str(tmp_path / "hf"))  # no accelerate config file of this machine's user
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    done = subprocess.run([sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
                           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
                           "fair_accelerate.py", "--epochs", "2"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"{done.stdout}\n{done.stderr}"
    lines = done.stdout.splitlines()
    assert [line.split(":")[0] for line in lines if line.startswith("epoch ")] == ["epoch 0", "epoch 1"]  # rank 0
    assert lines[-1] == "processes 2, max rank difference 0.0"
    saved = sorted(p.name for p in (tmp_path / "fair_state").iterdir())
    assert "custom_checkpoint_0.pkl" in saved and "model.safetensors" in saved
    state = torch.load(tmp_path / "fair_state" / "custom_checkpoint_0.pkl", weights_only=False)
    assert state["step"] == 2 * 20 and state["epoch"] == 1  # 4000 samples in global batches of 2 × 100
    assert "model" not in state and "rng" not in state  # Accelerate's own files hold them
    assert SolverCheckpoint.__name__ in scripts[0]
