"""ACE's figures of a run's arrays: the dual dynamics (Figs. 5, 6) and the equivariance error (Fig. 4).

Plain arrays in, a PNG out (matplotlib's Agg backend, imported only when a plot is drawn); the plots
of a run folder are :mod:`constrained_eq.run.plots`'s.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["plot_dynamics", "plot_equivariance"]


def _pyplot() -> Any:
    """``matplotlib.pyplot`` on the Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_dynamics(gamma, lam, slack=None, path: str | Path = "dynamics.png", *, title: str = "") -> Path:
    """γ, λ (and u) per layer over steps, as ACE Figs. 5, 6 (matplotlib Agg); returns the path."""
    plt = _pyplot()
    series = [("γ", gamma), ("λ", lam)] + ([("u", slack)] if slack is not None else [])
    fig, axes = plt.subplots(1, len(series), figsize=(4.2 * len(series), 3.2), squeeze=False)
    for ax, (name, values) in zip(axes[0], series, strict=True):
        values = np.asarray(values, float)
        for i in range(values.shape[1]):
            ax.plot(values[:, i], lw=1, label=f"layer {i}")
        ax.axhline(0, color="k", lw=0.5)
        ax.set(xlabel="step", ylabel=name)
    axes[0][0].legend(fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)


def plot_equivariance(error, bound=None, path: str | Path = "equivariance.png", *, title: str = "") -> Path:
    """Equivariance error (and the Thm 4.2 bound) over epochs, log scale, as ACE Fig. 4."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(4.5, 3.2))
    ax.semilogy(np.asarray(error, float), label="measured error")
    if bound is not None:
        ax.semilogy(np.asarray(bound, float), "--", label="Thm 4.2 bound")
    ax.set(xlabel="epoch", ylabel="equivariance error", title=title)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)

