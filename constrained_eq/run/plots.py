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

from constrained_eq._utils.atomic_io import atomic_write_bytes, refuse_link
from constrained_eq.training.run_folder import read_csv

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
    run_dir = Path(run_dir)
    history = read_csv(run_dir / "history.csv")
    if not history:
        return []
    summary = _summary(run_dir)
    described = {c["name"]: c for c in summary.get("structure", {}).get("constraints", [])}
    tolerance = summary.get("measured_constraints", {}).get("tolerance")
    _MARKEVERY[0] = max(1, len(history["epoch"]) // 25)
    save = _Saver(run_dir / "plots")
    _curves_panel(save, history)
    train, split = _grouped_columns(history)
    for name in dict.fromkeys([k for k, _ in train] + [k for k, _ in split]):
        if name != "val_branch":
            _constraint_panels(save, history, name, described.get(name, {}), tolerance, train, split)
    _lines_panel(save, history, sorted(train.get(("val_branch", "contribution"), [])), "val_branch_contribution",
                 ylabel="|γ_i f_neq,i| (validation mean)", title="branch contribution per layer", label="layer {}")
    _lines_panel(save, history, [(key, key) for key in history if "equivariance" in key], "equivariance_error",
                 ylabel="relative equivariance error", title="equivariance error", label="{}", fontsize=8)
    return save.written


def _figure(width: float, height: float, columns: int = 1, legend: float = 0.0) -> tuple[Any, list[Any]]:
    """A figure of ``width × height`` inches with ``columns`` axes side by side and fixed margins.

    The margins are fixed in inches (room for tick labels and axis labels; ``legend`` inches on the right
    for a legend drawn outside the axes) rather than measured by ``tight_layout``, which draws every
    figure twice; the figure is not registered with pyplot, so nothing has to close it.
    """
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height))
    left, right, bottom, top, gap = 0.85, 0.15 + legend, 0.5, 0.3, 0.9
    fig.subplots_adjust(left=left / width, right=1 - right / width, bottom=bottom / height, top=1 - top / height,
                        wspace=gap * columns / (width - left - right - gap * (columns - 1)))
    return fig, list(fig.subplots(1, columns, squeeze=False)[0])


def _log_scale(ax: Any) -> None:
    """A log y axis labelled in plain text (0.04, 1e-05): mathtext's 10⁻² costs ~0.4 s to set up per process."""
    from matplotlib.ticker import LogFormatter

    class PlainLogFormatter(LogFormatter):  # LogFormatter's choice of ticks to label, written as %g
        def _num_to_string(self, x: float, vmin: float, vmax: float) -> str:
            return f"{x:g}"

    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(PlainLogFormatter())
    ax.yaxis.set_minor_formatter(PlainLogFormatter(labelOnlyBase=False))


class _Saver:
    """``save(fig, name)``: integer epoch ticks, ``<out>/<name>.png`` (Agg); remembers the files."""

    def __init__(self, out: Path) -> None:
        self.out, self.written = out, []
        refuse_link(out)  # a `plots` link: its target is never written into
        out.mkdir(parents=True, exist_ok=True)

    def __call__(self, fig: Any, name: str) -> None:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.ticker import MaxNLocator

        path = self.out / (re.sub(r"[^\w.-]+", "_", name) + ".png")  # constraint names are free text
        for ax in fig.axes:
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole numbers
        buffer = io.BytesIO()
        FigureCanvasAgg(fig).print_png(buffer, metadata={"Software": None})
        atomic_write_bytes(path, buffer.getvalue())  # a link at `path` is replaced, never followed
        self.written.append(path)


def _curves_panel(save: _Saver, history: dict[str, list[float]]) -> None:
    """``curves.png``: the training loss and every validation metric, one panel per unit."""
    epochs = history["epoch"]
    curves = [k for k in history if k == "train_loss" or (re.match(r"val(_avg)?_", k) and "equivariance" not in k
                                                          and "." not in k and "/" not in k)]
    units: dict[str, list[str]] = {}
    for key in curves:
        units.setdefault(_metric_unit(key), []).append(key)
    fig, axes = _figure(4.6 * len(units), 3.5, columns=len(units))
    for ax, (unit, keys) in zip(axes, units.items(), strict=True):
        for key, style in zip(keys, _styles(), strict=False):
            ax.plot(*_finite(epochs, history[key]), label=key, **style)
        if unit == "loss" and all(v > 0 for k in keys for v in history[k] if not math.isnan(v)):
            _log_scale(ax)
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


def _constraint_panels(save: _Saver, history: dict[str, list[float]], name: str, info: dict,
                       tolerance: float | None, train: dict, split: dict) -> None:
    """One constraint's value, violation, multiplier, slack and branch-contribution plots."""
    epochs = history["epoch"]
    homotopy = info.get("homotopy", name.endswith("gammas"))
    element = "layer" if homotopy else "element"
    value_label = "γ" if homotopy else f"{info.get('target', name)} (target value)"
    per_epoch = homotopy or info.get("reads") == ["parameters"]  # no batch: the value at the epoch's end
    _value_panel(save, epochs, history, name, value_label, element, info, per_epoch,
                 train.get((name, "value"), []), split.get((name, "value"), []))
    if split.get((name, "violation")):
        _violation_panel(save, history, name, element, tolerance, sorted(split[(name, "violation")]))
    for what, label in (("lambda", "multiplier λ"), ("slack", "slack u"),
                        ("contribution", "branch contribution |γ f_neq|")):
        columns = train.get((name, what))
        if not columns:
            continue
        fig, (ax,) = _figure(5.2, 3.6)
        for (index, key), style in zip(sorted(columns), _styles(), strict=False):
            ax.plot(*_finite(epochs, history[key]), label=f"{element} {index}", **style)
        ax.axhline(0.0, color="k", lw=0.5)
        ax.set(xlabel="epoch", ylabel=label, title=name)
        if len(columns) <= 12:
            ax.legend(fontsize=7, ncol=2)
        save(fig, f"{name}_{what}")


def _violation_panel(save: _Saver, history: dict[str, list[float]], name: str, element: str,
                     tolerance: float | None, columns: list[tuple[int, str, str]]) -> None:
    """``<constraint>_violation.png``: the validation violation per element, tolerance drawn."""
    fig, (ax,) = _figure(5.2, 3.6)
    for (index, prefix, key), style in zip(columns, _styles(), strict=False):
        label = f"{element} {index}" + (" (averaged model)" if prefix == "val_avg" else "")
        ax.plot(*_finite(history["epoch"], history[key]), label=label, **style)
    if tolerance is not None:
        ax.axhline(tolerance, color="k", lw=0.8, ls="--", label=f"tolerance {tolerance:g}")
    ax.set(xlabel="epoch", ylabel="violation (validation split)", title=name)
    ax.legend(fontsize=7)
    save(fig, f"{name}_violation")


def _lines_panel(save: _Saver, history: dict[str, list[float]], columns: list[tuple[Any, str]],
                 name: str, *, ylabel: str, title: str, label: str, fontsize: int = 7) -> None:
    """One line per ``(index, key)`` column, log scale when every value is positive; nothing if no column."""
    if not columns:
        return
    fig, (ax,) = _figure(5.2, 3.6)
    for (index, key), style in zip(columns, _styles(), strict=False):
        ax.plot(*_finite(history["epoch"], history[key]), label=label.format(index), **style)
    if all(v > 0 for _, key in columns for v in history[key] if not math.isnan(v)):
        _log_scale(ax)  # contributions and errors span decades
    ax.set(xlabel="epoch", ylabel=ylabel, title=title)
    ax.legend(fontsize=fontsize, ncol=2 if fontsize == 7 else 1)
    save(fig, name)


def _value_panel(save, epochs, history, name, label, element, info, per_epoch, train_columns,
                 split_columns) -> None:
    """The target's values: training batch (thin) and validation split (markers), with the bound drawn."""
    if per_epoch:  # a parameter-only target: its validation value is its end-of-epoch value, drawn once
        split_columns = [c for c in split_columns if c[1] != "val"]
    if not train_columns and not split_columns:
        return
    lines = [(f"{element} {index}" + ("" if per_epoch else " (last train batch)"), key, "train")
             for index, key in sorted(train_columns)]
    lines += [(f"{element} {index} (validation{', averaged' if prefix == 'val_avg' else ''})", key, "split")
              for index, prefix, key in sorted(split_columns)]
    outside = len(lines) <= 12  # the legend, right of the axes: about 0.05 inch a character at font size 6
    fig, (ax,) = _figure(7.4, 3.6, legend=0.5 + 0.05 * max(len(line[0]) for line in lines) if outside else 0.0)
    for (text, key, kind), style in zip(lines, _styles(), strict=False):
        thin = kind == "train" and bool(split_columns)  # training lines thin where validation is drawn too
        ax.plot(*_finite(epochs, history[key]), label=text,
                **({**style, "marker": None, "lw": 0.8, "alpha": 0.7} if thin else style))
    bound = info.get("bound")
    if info.get("kind") == "Equality" or (bound is None and info.get("homotopy")):
        bound = 0.0
    if bound is not None:
        ax.axhline(bound, color="k", lw=1.0, ls="--", label=f"bound {bound:g}")
    ax.set(xlabel="epoch", ylabel=label, title=name)
    if outside:
        ax.legend(fontsize=6, loc="center left", bbox_to_anchor=(1.0, 0.5))
    save(fig, f"{name}_value")
