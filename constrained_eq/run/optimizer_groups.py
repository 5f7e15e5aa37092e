"""``optimizer.groups`` of a problem file: θ's parameters split by name pattern among optimizers."""

from __future__ import annotations

import fnmatch
from collections.abc import Callable
from typing import Any

import torch

from constrained_eq.core.solver.optimizers import NAMED, extrapolating
from constrained_eq.run.problem_model import OptimizerSection

__all__ = ["grouped_optimizers"]


def grouped_optimizers(section: OptimizerSection, model: torch.nn.Module, scheme: str | None,
                       single: Callable[[Any], torch.optim.Optimizer],
                       make: Callable[[str, list[dict[str, Any]]], torch.optim.Optimizer] | None = None) -> Any:
    """The primal optimizers of a problem file's ``optimizer`` section (``single`` when it has no ``groups``).

    Each parameter goes to the first group whose ``params`` pattern (fnmatch) matches its name, else to
    the section's own settings; groups naming the same optimizer become param groups of one optimizer,
    the section's optimizer first, built by ``make(name, param_groups)`` (default: the named classes).
    Under ``scheme == "extrapolation"`` each gets its counterpart.

    Raises:
        ValueError: If a group's pattern matches no parameter.
    """
    groups = section.groups
    if not groups:
        return single
    blocks: dict[str, list[dict[str, Any]]] = {section.name: []}
    default = {"params": [], "lr": section.lr, "weight_decay": section.weight_decay}
    chosen = [{"params": [], "lr": g["lr"] or section.lr,
               "weight_decay": section.weight_decay if g["weight_decay"] is None else g["weight_decay"]}
              for g in groups]
    for name, parameter in model.named_parameters():
        index = next((i for i, g in enumerate(groups) if fnmatch.fnmatchcase(name, g["params"])), None)
        (default if index is None else chosen[index])["params"].append(parameter)
    for index, (group, block) in enumerate(zip(groups, chosen, strict=True)):
        if not block["params"]:
            example = next(iter(dict(model.named_parameters())), "?")
            raise ValueError(f"Expected 'optimizer.groups[{index}].params' to match a parameter name such as "
                             f"{example!r} (got {group['params']!r})")
        blocks.setdefault(group["name"] or section.name, []).append(block)
    if default["params"]:
        blocks[section.name].insert(0, default)
    make = make or (lambda name, param_groups: NAMED[name](param_groups))
    optimizers = [make(name, param_groups) for name, param_groups in blocks.items() if param_groups]
    if scheme == "extrapolation":
        optimizers = [extrapolating(o, "primal optimizer") for o in optimizers]
    return optimizers
