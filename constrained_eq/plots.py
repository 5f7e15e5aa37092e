"""Plots of a run folder (matplotlib, Agg backend): learning curves and per-layer γ, λ, u.

Like ACE Figs. 2 and 4–6: the validation curve, then one panel per constraint and quantity with
one line per layer, and the equivariance error when the run logged one.
"""

from __future__ import annotations

import math
import os
import re
from pathlib import Path

from constrained_eq.runs import read_csv

__all__ = ["plot_run"]

_WHAT = {"value": "value (γ)", "lambda": "multiplier λ", "slack": "slack u",
         "contribution": "branch contribution |γ f_neq| (validation)"}


def _finite(xs: list[float], ys: list[float]) -> tuple[list[float], list[float]]:
    pairs = [(x, y) for x, y in zip(xs, ys, strict=True) if not math.isnan(y)]
    return [p[0] for p in pairs], [p[1] for p in pairs]


def plot_run(run_dir: str | os.PathLike) -> list[Path]:
    """Write ``plots/*.png`` for the ``history.csv`` of ``run_dir`` and return the files written.

    Files: ``curves.png`` (train loss and every ``val_*`` metric), ``<constraint>_<what>.png`` for
    what in value/lambda/slack (one line per layer), ``val_branch_contribution.png`` (|γ_i f_neq,i| per
    layer at validation) and ``equivariance_error.png`` when logged.
    """
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    run_dir = Path(run_dir)
    history = read_csv(run_dir / "history.csv")
    if not history:
        return []
    out = run_dir / "plots"
    out.mkdir(parents=True, exist_ok=True)
    epochs = history["epoch"]
    written: list[Path] = []

    def save(fig, name: str) -> None:
        path = out / (re.sub(r"[^\w.-]+", "_", name) + ".png")  # constraint names are free text
        fig.tight_layout()
        fig.savefig(path, dpi=100)
        plt.close(fig)
        written.append(path)

    curves = [k for k in history
              if k == "train_loss" or (k.startswith("val_") and "equivariance" not in k and "." not in k)]
    fig, ax = plt.subplots(figsize=(5, 3.5))
    for key in curves:
        ax.plot(*_finite(epochs, history[key]), label=key, marker=".")
    if all(v > 0 for k in curves for v in history[k] if not math.isnan(v)):
        ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_title("loss and validation metrics")
    ax.legend(fontsize=8)
    save(fig, "curves")

    groups: dict[tuple[str, str], list[tuple[int, str]]] = {}
    for key in history:
        match = re.fullmatch(r"(.+)\.(value|lambda|slack|contribution)\.(\d+)", key)
        if match:
            groups.setdefault((match[1], match[2]), []).append((int(match[3]), key))
    for (constraint, what), columns in sorted(groups.items()):
        fig, ax = plt.subplots(figsize=(5, 3.5))
        for index, key in sorted(columns):
            ax.plot(*_finite(epochs, history[key]), label=f"layer {index}")
        ax.axhline(0.0, color="k", lw=0.5)
        ax.set_xlabel("epoch")
        ax.set_title(f"{constraint}: {_WHAT[what]}")
        if len(columns) <= 12:
            ax.legend(fontsize=7, ncol=2)
        save(fig, f"{constraint}_{what}")

    errors = [k for k in history if "equivariance" in k]
    if errors:
        fig, ax = plt.subplots(figsize=(5, 3.5))
        for key in errors:
            ax.plot(*_finite(epochs, history[key]), label=key, marker=".")
        ax.set_xlabel("epoch")
        ax.set_title("equivariance error")
        ax.legend(fontsize=8)
        save(fig, "equivariance_error")
    return written
