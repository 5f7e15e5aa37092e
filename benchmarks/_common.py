"""Shared helpers of the benchmarks: machine report, interleaved timing, relaxed models.

Every benchmark measures its variants side by side in one process: after a warm-up, the
variants are timed in interleaved rounds (A, B, C, B, C, A, …, order rotated), one step per sample, and the
median of many steps is reported. Ratios are taken between medians.

Two clocks (``--clock``): ``wall`` (``time.perf_counter``, the default, the only one on CUDA) and
``thread`` (``time.thread_time``: the CPU time of the calling thread). With ``--threads 1`` every CPU
kernel runs in the calling thread, so the thread clock counts the step's own work and not the time
the scheduler gave to other processes: it measures on a machine that other jobs share, where wall
time does not. It still feels them through shared caches and memory bandwidth.
"""

from __future__ import annotations

import argparse
import atexit
import gc
import os
import platform
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from constrained_eq import HomotopicLayer, LinearBranch

__all__ = [
    "machine",
    "parse_args",
    "devices",
    "synchronize",
    "interleaved",
    "CLOCKS",
    "print_table",
    "RelaxedMLP",
    "TinyRelaxed",
    "temporary_data_cache",
    "nbody_spec",
]

NBODY_PROBLEM = Path(__file__).resolve().parents[1] / "problems" / "nbody_full.yaml"


def parse_args(description: str, steps: int = 200, warmup: int = 20) -> argparse.Namespace:
    """Common command-line options: ``--steps``, ``--warmup``, ``--threads``, ``--device``, ``--clock``."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--steps", type=int, default=steps, help="timed steps per variant (median taken)")
    parser.add_argument("--warmup", type=int, default=warmup, help="untimed steps per variant first")
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cpu, and cuda if available)")
    parser.add_argument("--clock", default="wall", choices=sorted(CLOCKS),
                        help="wall: elapsed time; thread: CPU time of this thread (needs --threads 1 and a CPU "
                             "device; for a machine that other jobs share)")
    args, _ = parser.parse_known_args()
    if args.clock == "thread" and (args.threads != 1 or args.device not in (None, "cpu")):
        parser.error("--clock thread counts only the calling thread's CPU time: use it with --threads 1 on the CPU "
                     f"(got --threads {args.threads}, --device {args.device})")
    torch.set_num_threads(args.threads)
    return args


def devices(choice: str | None) -> list[torch.device]:
    """The devices to benchmark on: ``choice``, or CPU plus CUDA when it is available."""
    if choice is not None:
        return [torch.device(choice)]
    return [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])


def machine(device: torch.device, clock: str = "wall") -> str:
    """One line naming the machine, the device, the library versions, the clock and the load average."""
    import cooper

    if device.type == "cuda":
        where = torch.cuda.get_device_name(device)
    else:
        where = f"{platform.processor() or platform.machine()} CPU, {torch.get_num_threads()} threads"
    clock = clock_on(device, clock)
    load = f"load {os.getloadavg()[0]:.1f}" if hasattr(os, "getloadavg") else "load ?"
    return (f"{where} | torch {torch.__version__} | cooper {getattr(cooper, '__version__', '?')} | "
            f"python {platform.python_version()} | {platform.system()} | {clock} clock | {load}")


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


CLOCKS: dict[str, Callable[[], float]] = {"wall": time.perf_counter, "thread": time.thread_time}


def clock_on(device: torch.device, clock: str) -> str:
    """The clock that times ``device``: ``clock`` on the CPU, always ``"wall"`` on CUDA (kernels run off-thread)."""
    return "wall" if device.type == "cuda" else clock


@dataclass
class Timing:
    """Per-variant step times in seconds."""

    name: str
    samples: list[float]

    @property
    def median(self) -> float:
        return statistics.median(self.samples)


def interleaved(variants: dict[str, Callable[[], object]], steps: int, warmup: int,
                device: torch.device, clock: str = "wall") -> dict[str, Timing]:
    """Time each variant's step ``steps`` times in interleaved rounds after ``warmup`` rounds.

    Args:
        variants: Name → a callable that runs one step.
        steps: Timed rounds.
        warmup: Untimed rounds first.
        device: Synchronised around each timed step (CUDA).
        clock: ``"wall"`` or ``"thread"`` (see the module docstring); on CUDA always ``"wall"``.

    Returns:
        Name → :class:`Timing`.
    """
    for _ in range(warmup):
        for fn in variants.values():
            fn()
    synchronize(device)
    now = CLOCKS[clock_on(device, clock)]
    timings = {name: Timing(name, []) for name in variants}
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        names = list(variants)
        for round_index in range(steps):
            shift = round_index % len(names)  # rotate the order so no variant always runs first
            for name in names[shift:] + names[:shift]:
                fn = variants[name]
                synchronize(device)
                start = now()
                fn()
                synchronize(device)
                timings[name].samples.append(now() - start)
            gc.collect()
    finally:
        if gc_was_enabled:
            gc.enable()
    return timings


def print_table(title: str, rows: list[tuple[str, ...]], header: tuple[str, ...]) -> None:
    """Print a small fixed-width table."""
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    print(f"\n{title}")
    print("  ".join(str(h).ljust(w) for h, w in zip(header, widths, strict=True)))
    print("  ".join("-" * w for w in widths))
    for row in rows:
        print("  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)))


class RelaxedMLP(nn.Module):
    """An EGNN-sized relaxed MLP: ``depth`` homotopic blocks f_eq + γ_i f_neq of width ``width``.

    f_eq is a two-layer SiLU MLP (the "message/update" MLP of an EGNN layer), f_neq a dense linear
    branch; with width 128 and depth 4 it has ~200k parameters, the size of N-body EGNNs.

    Args:
        in_features: Input size per node.
        width: Hidden width.
        depth: Number of homotopic blocks (= number of γ).
        out_features: Output size per node.
    """

    def __init__(self, in_features: int = 16, width: int = 128, depth: int = 4, out_features: int = 3) -> None:
        super().__init__()
        self.embed = nn.Linear(in_features, width)
        self.blocks = nn.ModuleList(
            HomotopicLayer(
                nn.Sequential(nn.Linear(width, width), nn.SiLU(), nn.Linear(width, width)),
                nn.Linear(width, width, bias=False),
            )
            for _ in range(depth)
        )
        self.head = nn.Linear(width, out_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.embed(x)
        for block in self.blocks:
            h = h + torch.nn.functional.silu(block(h))
        return self.head(h)


class TinyRelaxed(nn.Module):
    """``layers`` tiny homotopic layers (scale eq, linear neq on 4 features), to isolate per-γ overhead."""

    def __init__(self, layers: int, features: int = 4) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(
            HomotopicLayer(nn.Identity(), LinearBranch(features, features, init_std=1e-2)) for _ in range(layers)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return x


def temporary_data_cache() -> str:
    """Point ``$CEQ_CACHE`` at a new temporary folder, deleted at exit, and return it.

    The N-body data is simulated on first use and cached under ``$CEQ_CACHE`` (default
    ``~/.cache/constrained_eq``); the benchmarks simulate a small set there instead, so they never
    write into the user's cache.
    """
    folder = tempfile.mkdtemp(prefix="ceq_bench_")
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    os.environ["CEQ_CACHE"] = folder
    return folder


def nbody_spec(strategy: str, model: str = "egnn", batch_size: int = 100, n_train: int = 100) -> dict[str, Any]:
    """``problems/nbody_full.yaml`` (EGNN paper settings) under ``strategy``, with a small simulated set.

    Only the split sizes change (``n_train`` trajectories, 100 for validation, 1 for test); ``model``
    ``"segnn"`` swaps in the nbody task's SEGNN with its default options. Call
    :func:`temporary_data_cache` first.
    """
    from constrained_eq.run.problem_file import load_problem_file

    overrides: dict[str, Any] = {
        "task": {"name": "nbody", "options": {"n_train": n_train, "n_val": 100, "n_test": 1}},
        "strategy": strategy,
        "training.batch_size": batch_size,
    }
    if model != "egnn":
        overrides["model"] = {"name": model, "options": {}}
    return load_problem_file(NBODY_PROBLEM, overrides)
