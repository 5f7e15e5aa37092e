"""Plots of a run folder (matplotlib, Agg backend): learning curves and every constraint by its name.

Like ACE Figs. 2 and 4–6, with every axis labelled: the learning curves with one panel per unit (the
losses share one, each other metric gets its own), then per constraint its target value — on the last
training batch and over the whole validation split — with the bound drawn where it is, its
validation violation against the feasibility tolerance, its multiplier λ and slack u. Lines are told
apart by colour, style and marker. The γ vocabulary is used for homotopy constraints only.
"""

from __future__ import annotations

import io
import itertools
import math
import os
import re
from pathlib import Path
from typing import Any

from constrained_eq.run.runs import atomic_write_bytes, read_csv, refuse_link

__all__ = ["plot_run"]

_STYLES = ["-", "--", "-.", ":"]
_MARKERS = ["o", "s", "^", "v", "D", "x", "+", "*"]
_TRAIN = re.compile(r"(.+)\.(value|lambda|slack|contribution)\.(\d+)")
_SPLIT = re.compile(r"(val|val_avg)/(.+)/(value|violation)\[(\d+)\]")
_FRACTION = re.compile(r"(^|_)(accuracy|error_rate)$")  # metrics in [0, 1]: their panel stays within it


def _finite(xs: list[float], ys: list[float]) -> tuple[list[float], list[float]]:
    pairs = [(x, y) for x, y in zip(xs, ys, strict=True) if not math.isnan(y)]
    return [p[0] for p in pairs], [p[1] for p in pairs]


_MARKEVERY = [1]  # set per run: about 25 markers per line


def _styles():
    """Colour, line style and marker cycled together, so overlapping lines stay distinguishable."""
    for i, (style, marker) in enumerate(zip(itertools.cycle(_STYLES), itertools.cycle(_MARKERS))):
        every = _MARKEVERY[0]  # staggered, so markers of overlapping lines do not hide each other
        yield {"linestyle": style, "marker": marker, "color": f"C{i % 10}", "markersize": 4, "lw": 1.2,
               "markevery": (i * max(1, every // 4) % every, every)}


def _summary(run_dir: Path) -> dict:
    from constrained_eq.run.report import read_run_summary

    return read_run_summary(run_dir)


def _metric_unit(column: str) -> str:
    """The panel of a learning-curve column: ``loss`` for losses, else the metric's own name."""
    name = re.sub(r"^(train|val_avg|val)_", "", column)
    return "loss" if name.endswith("loss") else name


def plot_run(run_dir: str | os.PathLike) -> list[Path]:
    """Write ``plots/*.png`` for the ``history.csv`` of ``run_dir`` and return the files written.

    Files: ``curves.png`` (one panel per unit), per constraint ``<constraint>_value.png`` (training batch
    and validation, bound drawn), ``<constraint>_violation.png`` (validation, tolerance drawn),
    ``<constraint>_lambda.png``, ``<constraint>_slack.png``, ``val_branch_contribution.png`` (|γ_i f_neq,i|
    per layer at validation) and ``equivariance_error.png`` when logged.
    """
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    run_dir = Path(run_dir)
    history = read_csv(run_dir / "history.csv")
    if not history:
        return []
    summary = _summary(run_dir)
    described = {c["name"]: c for c in summary.get("structure", {}).get("constraints", [])}
    tolerance = summary.get("measured_constraints", {}).get("tolerance")
    _MARKEVERY[0] = max(1, len(history["epoch"]) // 25)
    save = _Saver(plt, run_dir / "plots")
    _curves_panel(plt, save, history)
    train, split = _grouped_columns(history)
    for name in dict.fromkeys([k for k, _ in train] + [k for k, _ in split]):
        if name != "val_branch":
            _constraint_panels(plt, save, history, name, described.get(name, {}), tolerance, train, split)
    _lines_panel(plt, save, history, sorted(train.get(("val_branch", "contribution"), [])), "val_branch_contribution",
                 ylabel="|γ_i f_neq,i| (validation mean)", title="branch contribution per layer", label="layer {}")
    _lines_panel(plt, save, history, [(key, key) for key in history if "equivariance" in key], "equivariance_error",
                 ylabel="relative equivariance error", title="equivariance error", label="{}", fontsize=8)
    return save.written


class _Saver:
    """``save(fig, name)``: integer epoch ticks, tight layout, ``<out>/<name>.png``; remembers the files."""

    def __init__(self, plt: Any, out: Path) -> None:
        self.plt, self.out, self.written = plt, out, []
        refuse_link(out)  # a `plots` link: its target is never written into
        out.mkdir(parents=True, exist_ok=True)

    def __call__(self, fig: Any, name: str) -> None:
        from matplotlib.ticker import MaxNLocator

        path = self.out / (re.sub(r"[^\w.-]+", "_", name) + ".png")  # constraint names are free text
        for ax in fig.axes:
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole numbers
        fig.tight_layout()
        buffer = io.BytesIO()
        fig.savefig(buffer, dpi=100, format="png")
        self.plt.close(fig)
        atomic_write_bytes(path, buffer.getvalue())  # a link at `path` is replaced, never followed
        self.written.append(path)


def _curves_panel(plt: Any, save: _Saver, history: dict[str, list[float]]) -> None:
    """``curves.png``: the training loss and every validation metric, one panel per unit."""
    epochs = history["epoch"]
    curves = [k for k in history if k == "train_loss" or (re.match(r"val(_avg)?_", k) and "equivariance" not in k
                                                          and "." not in k and "/" not in k)]
    units: dict[str, list[str]] = {}
    for key in curves:
        units.setdefault(_metric_unit(key), []).append(key)
    fig, axes = plt.subplots(1, len(units), figsize=(4.6 * len(units), 3.5), squeeze=False)
    for ax, (unit, keys) in zip(axes[0], units.items(), strict=True):
        for key, style in zip(keys, _styles(), strict=False):
            ax.plot(*_finite(epochs, history[key]), label=key, **style)
        if unit == "loss" and all(v > 0 for k in keys for v in history[k] if not math.isnan(v)):
            ax.set_yscale("log")
        values = [v for k in keys for v in history[k] if not math.isnan(v)]
        if _FRACTION.search(unit) and values and all(0.0 <= v <= 1.0 for v in values):
            low, high = ax.get_ylim()  # the autoscale margin would run past 1.0 (or below 0) for an accuracy near 1
            ax.set_ylim(max(low, 0.0), min(high, 1.0))
        ax.set(xlabel="epoch", ylabel=unit.replace("_", " "), title=unit.replace("_", " "))
        ax.legend(fontsize=7)
    save(fig, "curves")


def _grouped_columns(history: dict[str, list[float]]) -> tuple[dict, dict]:
    """Per-element columns grouped by (constraint, what): training ``(index, key)``, split ``(index, prefix, key)``."""
    train: dict[tuple[str, str], list[tuple[int, str]]] = {}
    split: dict[tuple[str, str], list[tuple[int, str, str]]] = {}
    for key in history:
        if match := _TRAIN.fullmatch(key):
            train.setdefault((match[1], match[2]), []).append((int(match[3]), key))
        if match := _SPLIT.fullmatch(key):
            split.setdefault((match[2], match[3]), []).append((int(match[4]), match[1], key))
    return train, split


def _constraint_panels(plt: Any, save: _Saver, history: dict[str, list[float]], name: str, info: dict,
                       tolerance: float | None, train: dict, split: dict) -> None:
    """One constraint's value, violation, multiplier, slack and branch-contribution plots."""
    epochs = history["epoch"]
    homotopy = info.get("homotopy", name.endswith("gammas"))
    element = "layer" if homotopy else "element"
    value_label = "γ" if homotopy else f"{info.get('target', name)} (target value)"
    per_epoch = homotopy or info.get("reads") == ["parameters"]  # no batch: the value at the epoch's end
    _value_panel(plt, save, epochs, history, name, value_label, element, info, per_epoch,
                 train.get((name, "value"), []), split.get((name, "value"), []))
    if split.get((name, "violation")):
        _violation_panel(plt, save, history, name, element, tolerance, sorted(split[(name, "violation")]))
    for what, label in (("lambda", "multiplier λ"), ("slack", "slack u"),
                        ("contribution", "branch contribution |γ f_neq|")):
        columns = train.get((name, what))
        if not columns:
            continue
        fig, ax = plt.subplots(figsize=(5.2, 3.6))
        for (index, key), style in zip(sorted(columns), _styles(), strict=False):
            ax.plot(*_finite(epochs, history[key]), label=f"{element} {index}", **style)
        ax.axhline(0.0, color="k", lw=0.5)
        ax.set(xlabel="epoch", ylabel=label, title=name)
        if len(columns) <= 12:
            ax.legend(fontsize=7, ncol=2)
        save(fig, f"{name}_{what}")


def _violation_panel(plt: Any, save: _Saver, history: dict[str, list[float]], name: str, element: str,
                     tolerance: float | None, columns: list[tuple[int, str, str]]) -> None:
    """``<constraint>_violation.png``: the validation violation per element, tolerance drawn."""
    fig, ax = plt.subplots(figsize=(5.2, 3.6))
    for (index, prefix, key), style in zip(columns, _styles(), strict=False):
        label = f"{element} {index}" + (" (averaged model)" if prefix == "val_avg" else "")
        ax.plot(*_finite(history["epoch"], history[key]), label=label, **style)
    if tolerance is not None:
        ax.axhline(tolerance, color="k", lw=0.8, ls="--", label=f"tolerance {tolerance:g}")
    ax.set(xlabel="epoch", ylabel="violation (validation split)", title=name)
    ax.legend(fontsize=7)
    save(fig, f"{name}_violation")


def _lines_panel(plt: Any, save: _Saver, history: dict[str, list[float]], columns: list[tuple[Any, str]],
                 name: str, *, ylabel: str, title: str, label: str, fontsize: int = 7) -> None:
    """One line per ``(index, key)`` column, log scale when every value is positive; nothing if no column."""
    if not columns:
        return
    fig, ax = plt.subplots(figsize=(5.2, 3.6))
    for (index, key), style in zip(columns, _styles(), strict=False):
        ax.plot(*_finite(history["epoch"], history[key]), label=label.format(index), **style)
    if all(v > 0 for _, key in columns for v in history[key] if not math.isnan(v)):
        ax.set_yscale("log")  # contributions and errors span decades
    ax.set(xlabel="epoch", ylabel=ylabel, title=title)
    ax.legend(fontsize=fontsize, ncol=2 if fontsize == 7 else 1)
    save(fig, name)


def _value_panel(plt, save, epochs, history, name, label, element, info, per_epoch, train_columns,
                 split_columns) -> None:
    """The target's values: training batch (thin) and validation split (markers), with the bound drawn."""
    if per_epoch:  # a parameter-only target: its validation value is its end-of-epoch value, drawn once
        split_columns = [c for c in split_columns if c[1] != "val"]
    if not train_columns and not split_columns:
        return
    fig, ax = plt.subplots(figsize=(7.4, 3.6))
    styles = _styles()
    for index, key in sorted(train_columns):
        style = next(styles)
        ax.plot(*_finite(epochs, history[key]),
                label=f"{element} {index}" + ("" if per_epoch else " (last train batch)"),
                **({**style, "marker": None, "lw": 0.8, "alpha": 0.7} if split_columns else style))
    for index, prefix, key in sorted(split_columns):
        which = "validation, averaged" if prefix == "val_avg" else "validation"
        ax.plot(*_finite(epochs, history[key]), label=f"{element} {index} ({which})", **next(styles))
    bound = info.get("bound")
    if info.get("kind") == "Equality" or (bound is None and info.get("homotopy")):
        bound = 0.0
    if bound is not None:
        ax.axhline(bound, color="k", lw=1.0, ls="--", label=f"bound {bound:g}")
    ax.set(xlabel="epoch", ylabel=label, title=name)
    if len(train_columns) + len(split_columns) <= 12:
        ax.legend(fontsize=6, loc="center left", bbox_to_anchor=(1.0, 0.5))
    save(fig, f"{name}_value")
