"""Evaluating a task's model on a split: mean loss and metric, equivariance error, the projected model.

:func:`evaluate_split` is what a run logs at each validation (``val_*``) and reports on the test split;
:func:`split_evaluator` adds the deployed f_{θ,0}'s loss (``projected_loss``) for a relaxed model, and
:func:`test_summary` judges the selected model on the test split, projected and not.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import torch

from constrained_eq.core.solver.engine import Solver
from constrained_eq.core.solver.split_feasibility import measure
from constrained_eq.homotopy import homotopic_layers
from constrained_eq.homotopy.recording import contribution_hooks
from constrained_eq.tasks import Task, projected
from constrained_eq.training.validation import loader_means

__all__ = ["evaluate_split", "split_evaluator", "test_summary"]


@torch.no_grad()
def evaluate_split(task: Task, model: torch.nn.Module, loader: Any, equivariance: bool = True,
                   contributions: bool = False) -> dict[str, float]:
    r"""Mean loss (and the task's metric when it differs) over ``loader``, plus the equivariance error.

    With ``contributions=True`` and a relaxed model, also ``branch.contribution.<i>``: the per-layer
    :math:`|\gamma_i|\,\mathbb{E}\|f_{neq,i}(z_{i-1})\|` over the loader, read by hooks during the same
    forward passes (logged as ``val_branch.contribution.<i>``; the symmetry report's ``|γ f_neq|``).
    """
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    with contextlib.ExitStack() as stack:
        read = (stack.enter_context(contribution_hooks(model))
                if contributions and any(True for _ in homotopic_layers(model)) else None)
        out = _task_means(task, model, loader, device)
        if read is not None:
            out.update({f"branch.contribution.{i}": float(c) for i, c in enumerate(read().tolist())})
    error = task.equivariance_error(model, loader) if equivariance else None
    if error is not None:
        out["equivariance_error"] = error
    model.train(was_training)
    return out


def _task_means(task: Task, model: torch.nn.Module, loader: Any, device: torch.device) -> dict[str, float]:
    """Batch-size-weighted means of the loss and the task's own metric, plus the task's loader-wide metrics."""
    measures: dict[str, Callable[[Any, Any], torch.Tensor]] = {"loss": task.loss}
    if type(task).metric is not Task.metric:
        measures[task.metric_name] = task.metric
    means, summaries = loader_means(model, loader, task.forward, measures, device, task.batch_summary)
    return {**means, **task.aggregate(summaries)}


def split_evaluator(task: Task, equivariance: bool, relaxed: bool) -> Callable[..., dict[str, float]]:
    """``evaluate(model, loader, contributions=True)`` for ``fit``: :func:`evaluate_split`, plus ``projected_loss``.

    For a relaxed model ``projected_loss`` is the loss of the deployed f_{θ,0}: both papers select the
    projected model by validation.
    """

    def evaluate(model: torch.nn.Module, loader: Any, contributions: bool = True) -> dict[str, float]:
        metrics = evaluate_split(task, model, loader, equivariance=equivariance, contributions=contributions)
        if relaxed:
            metrics["projected_loss"] = evaluate_split(task, projected(model), loader, equivariance=False)["loss"]
        return metrics

    return evaluate


def test_summary(evaluate: Callable[..., dict[str, float]], solver: Solver, model: torch.nn.Module, loader: Any,
                 relaxed: bool, tolerance: float) -> tuple[dict[str, float], dict[str, Any], dict[str, float]]:
    """The selected model on the test split: its metrics, the constraints' verdict, the projected model's metrics.

    Without a relaxed model the projected metrics are the model's own.
    """
    test = evaluate(model, loader, contributions=False)
    model.eval()
    verdict = measure(solver, model, loader, tolerance=tolerance).verdict()
    test_projected = evaluate(projected(model), loader, contributions=False) if relaxed else test
    return test, verdict, test_projected


