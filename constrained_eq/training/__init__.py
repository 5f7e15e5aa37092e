"""The training library: ``fit(solver, train_loader, val_loader, epochs=…)`` and what it is made of.

``fit`` runs the Solver's steps epoch by epoch, validates, selects, checkpoints, resumes exactly and
certifies the deployed model; its settings come in a few typed groups (:mod:`.settings`) and code
attaches to it through callbacks (:mod:`.callbacks`): learning-rate schedules (:mod:`.schedules`),
gradient clipping (:mod:`.clipping`), a logger or your own. It knows nothing of problem files: ``ceq``
(:mod:`constrained_eq.run`) builds a Solver from a file and calls ``fit``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from constrained_eq._utils.lazy import lazy_names

# each name is imported from its file on first use (``import constrained_eq.training`` imports no torch)
_HOME = {
    "fit": "constrained_eq.training.loop",
    **dict.fromkeys(("Evaluation", "Selection", "Averaging", "Limits", "Logging", "FitResult"),
                    "constrained_eq.training.settings"),
    **dict.fromkeys(("Callback", "LambdaCallback"), "constrained_eq.training.callbacks"),
    **dict.fromkeys(("LRScheduler", "resolve_schedule"), "constrained_eq.training.schedules"),
    "GradClipper": "constrained_eq.training.clipping",
}
__getattr__, __dir__ = lazy_names(__name__, _HOME)

if TYPE_CHECKING:
    from constrained_eq.training.callbacks import Callback, LambdaCallback
    from constrained_eq.training.clipping import GradClipper
    from constrained_eq.training.loop import fit
    from constrained_eq.training.schedules import LRScheduler, resolve_schedule
    from constrained_eq.training.settings import Averaging, Evaluation, FitResult, Limits, Logging, Selection

__all__ = ["fit", "FitResult", "Evaluation", "Selection", "Averaging", "Limits", "Logging", "Callback",
           "LambdaCallback", "LRScheduler", "resolve_schedule", "GradClipper"]
