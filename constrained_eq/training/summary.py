"""``metrics.json`` at the end of ``fit``: the run's outcome merged into what the file already holds."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from constrained_eq.core.solver.structure import describe
from constrained_eq.training.run_folder import read_json, write_json
from constrained_eq.training.selection import FEASIBLE
from constrained_eq.training.settings import FitResult, FitSettings
from constrained_eq.training.validation import FEASIBILITY_RULE

__all__ = ["write_fit_summary"]


def write_fit_summary(path: Path, result: FitResult, tested: tuple[dict, dict] | None, *, state: dict[str, Any],
                      settings: FitSettings, select: str, verdicts: Mapping[str, Any], solver: Any, trained: bool,
                      seconds: float) -> None:
    """Merge this run's outcome into ``metrics.json``.

    Its ``seconds`` add up over resumes: those of the epochs up to the checkpoint resumed from (kept in the
    checkpoint, so a killed run loses only the epochs it redoes), plus this process's. A resume that trains
    no epoch (the run had finished) keeps the ``feasibility`` verdicts the run ended with.
    """
    o = settings
    summary = read_json(path)
    kept = summary.get("feasibility") if not trained and summary.get("feasibility") else None
    summary.update(best_epoch=result.best_epoch, best=result.best_metrics, final=result.final_metrics,
                   epochs=result.epochs, select=select, select_mode=o.selection.mode,
                   skipped_steps=state["skipped_steps"],
                   feasibility={k: v.as_dict() for k, v in verdicts.items()},
                   selected=result.candidate, selection=result.selection,
                   feasible=(state["best_feasibility"] or {}).get("feasible"),
                   measured_constraints={"tolerance": float(o.evaluation.feasibility_tol), "rule": FEASIBILITY_RULE,
                                         "best": state["best_feasibility"], "final": state["final_feasibility"]},
                   averaging={"kind": o.averaging.kind, "start": o.averaging.start, "decay": o.averaging.ema_decay},
                   formulation=solver.formulation.name, formulation_options=solver.formulation.options(),
                   structure=describe(solver))
    if select == FEASIBLE:
        summary["objective"] = o.selection.objective
    if tested is not None:
        summary["test"], summary["measured_constraints"]["test"] = tested
    if result.certificate is not None:
        summary["certificate"] = result.certificate
    if kept is not None:
        summary["feasibility"] = kept
    summary["seconds"] = seconds
    write_json(path, summary)
