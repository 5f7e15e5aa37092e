"""Validation in :func:`~constrained_eq.training.loop.fit`: the evaluator, judging the candidates, iterate averaging.

At every evaluation the iterate (``val_*`` columns) and, with ``averaging``, the average of the iterates
(``val_avg_*``) are judged: the evaluator's metrics, the extra metrics and each constraint measured over
the whole split (:func:`constrained_eq.core.solver.split_feasibility.measure`). The selected model is judged once
more on the test split at the end.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from constrained_eq._utils.checks import check_int
from constrained_eq._utils.loaders import batch_size as _batch_size
from constrained_eq._utils.loaders import to_device
from constrained_eq.core.solver.engine import Solver
from constrained_eq.core.solver.split_feasibility import Measurement, measure
from constrained_eq.training.run_folder import load_checkpoint
from constrained_eq.training.selection import FEASIBLE

__all__ = ["Evaluator", "Candidate", "AVERAGING", "FEASIBILITY_RULE", "loader_means", "objective_evaluator",
           "averaged_model", "check_averaging", "judge", "validate_candidates", "check_selection_columns",
           "summary_row", "test_selected", "model_device"]

Evaluator = Callable[[torch.nn.Module, Any], Mapping[str, float]]
Candidate = tuple[str, str, torch.nn.Module, Measurement | None]  # (name, column prefix, model, measurement)
AVERAGING = ("none", "uniform", "ema")
FEASIBILITY_RULE = ("feasible when every counted constraint's largest element violation over the split "
                    "(|h| for an equality, [g - b]+ for an inequality, [|h| - u]+ with a slack) is <= tolerance; "
                    "penalties and homotopy (gamma) constraints are not counted")


def loader_means(model: torch.nn.Module, loader: Any, forward: Callable[[torch.nn.Module, Any], Any],
                 measures: Mapping[str, Callable[[Any, Any], torch.Tensor]], device: torch.device | None = None,
                 summarize: Callable[[Any, Any], Any] | None = None) -> tuple[dict[str, float], list[Any]]:
    r"""Batch-size-weighted means :math:`\sum_b n_b\,m(f(x_b), b) / \sum_b n_b` of each measure over ``loader``.

    One forward pass per batch (moved to ``device`` unless it is ``None``) serves every measure and
    ``summarize`` (whose non-``None`` results are returned in order, for loader-wide metrics). The sums
    stay on the device and are read once, at the end; a measure of an empty loader is absent.
    """
    sums: dict[str, Any] = {}
    count = 0
    summaries = []
    for batch in loader:
        batch = to_device(batch, device) if device is not None else batch
        n = _batch_size(batch)
        output = forward(model, batch)
        for name, of_output in measures.items():
            value = of_output(output, batch).detach() * n
            sums[name] = value if name not in sums else sums[name] + value
        summary = summarize(output, batch) if summarize is not None else None
        if summary is not None:
            summaries.append(summary)
        count += n
    return {k: float(v) / max(count, 1) for k, v in sums.items()}, summaries


def objective_evaluator(solver: Solver, device: torch.device | None = None) -> Evaluator:
    """The default validation: the problem's objective averaged over the loader, as ``{"loss": …}``."""
    objective = solver.problem.objective

    def evaluate(model: torch.nn.Module, loader: Any) -> dict[str, float]:
        means, _ = loader_means(model, loader, objective.forward, {"loss": objective}, device)
        return {"loss": means.get("loss", float("nan"))}

    return evaluate


def model_device(solver: Solver) -> torch.device:
    """The device of the solver's model (CPU for a model without parameters)."""
    return next((p.device for p in solver.model.parameters()), torch.device("cpu"))


def averaged_model(model: torch.nn.Module, averaging: str, decay: float) -> AveragedModel | None:
    r"""The iterate average of ``model`` (``torch.optim.swa_utils.AveragedModel``), or ``None``.

    Uniform: :math:`\bar\theta_n = \frac1n\sum_{k\le n}\theta_k`; EMA:
    :math:`\bar\theta \leftarrow d\,\bar\theta + (1-d)\,\theta`. Buffers are averaged too.
    """
    if averaging == "none":
        return None
    multi_avg_fn = get_ema_multi_avg_fn(decay) if averaging == "ema" else None
    return AveragedModel(model, multi_avg_fn=multi_avg_fn, use_buffers=True)


def check_averaging(averaging: Any, average_start: Any, ema_decay: Any) -> None:
    """Refuse an unknown ``averaging``, a negative ``average_start`` or an ``ema_decay`` outside (0, 1)."""
    if averaging not in AVERAGING:
        raise ValueError(f"fit: expected 'averaging.kind' to be one of {', '.join(map(repr, AVERAGING))} "
                         f"(got {averaging!r})")
    check_int(average_start, "averaging.start", "fit", at_least=0)
    if isinstance(ema_decay, bool) or not isinstance(ema_decay, int | float) or not 0 < ema_decay < 1:
        raise ValueError(f"fit: expected 'averaging.ema_decay' to be a number in (0, 1) (got {ema_decay!r})")


def judge(model: torch.nn.Module, loader: Any, solver: Solver, evaluate: Evaluator,
           metrics: Mapping[str, Callable] | None, tolerance: float, prefix: str) -> tuple[dict[str, float],
                                                                                        Measurement]:
    """Evaluate ``model`` on ``loader``: ``<prefix>_<metric>`` and ``<prefix>/<constraint>/…`` columns."""
    was_training = model.training
    model.eval()
    with torch.no_grad():
        values = dict(evaluate(model, loader))
        for name, metric in (metrics or {}).items():
            values[name] = metric(model, loader)
        measured = measure(solver, model, loader, tolerance=tolerance)
    model.train(was_training)
    row = {f"{prefix}_{k}": float(v) for k, v in values.items()}
    row.update(measured.columns(prefix))
    return row, measured


def validate_candidates(model: torch.nn.Module, averaged: AveragedModel | None, loader: Any, solver: Solver,
                         evaluate: Evaluator, metrics: Mapping[str, Callable] | None, tolerance: float,
                         row: dict[str, Any]) -> list[Candidate]:
    """Judge the iterate (``val_*`` columns) and, once it holds iterates, the averaged model (``val_avg_*``)."""
    judged, measured = judge(model, loader, solver, evaluate, metrics, tolerance, "val")
    row.update(judged)
    candidates: list[Candidate] = [("iterate", "val", model, measured)]
    if averaged is not None and int(averaged.n_averaged) > 0:
        judged, measured = judge(averaged.module, loader, solver, evaluate, metrics, tolerance, "val_avg")
        row.update(judged)
        candidates.append(("averaged", "val_avg", averaged.module, measured))
    return candidates


def check_selection_columns(select: str, objective: str, row: Mapping[str, Any],
                             metrics_row: Mapping[str, Any]) -> None:
    """Refuse a ``select`` (or, for ``feasible``, an ``objective``) column that validation did not log."""
    if select != FEASIBLE and select not in row:
        raise ValueError(f"fit: expected 'selection.column' to be 'feasible' or one of the logged columns "
                         f"{sorted(metrics_row)} (got {select!r})")
    if select == FEASIBLE and objective not in row:
        raise ValueError(f"fit: expected 'selection.objective' to be one of the logged columns {sorted(metrics_row)} "
                         f"(got {objective!r})")


def summary_row(row: Mapping[str, Any]) -> dict[str, Any]:
    """The scalar metrics of a history row (no per-element columns)."""
    return {k: v for k, v in row.items() if k != "epoch" and "." not in k and "/" not in k}


def test_selected(solver: Solver, model: torch.nn.Module, run_dir: Path | None, best_state: dict | None,
                   loader: Any, evaluate: Evaluator, metrics: Mapping[str, Callable] | None,
                   tolerance: float) -> tuple[dict[str, float], dict[str, Any]]:
    """Metrics and feasibility verdict of the selected model on the test split (a copy of the model)."""
    selected = copy.deepcopy(model)
    state = load_checkpoint(run_dir / "best.pt", map_location=model_device(solver))["model"] if run_dir else best_state
    if state is not None:
        selected.load_state_dict(state)
    row, measured = judge(selected, loader, solver, evaluate, metrics, tolerance, "test")
    return {k.removeprefix("test_"): v for k, v in summary_row(row).items()}, measured.verdict()
