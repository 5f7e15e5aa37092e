"""Unknown keywords given to the Solver: one ``TypeError`` naming them, the close matches and what is taken."""

from __future__ import annotations

import difflib
import inspect
from typing import Any

from constrained_eq.core.formulations import Formulation, formulation_class

__all__ = ["check_keywords"]


def check_keywords(formulation: Any, options: dict[str, Any], solver: list[str]) -> None:
    """Refuse a keyword that neither the Solver nor the formulation takes, naming it (``dual_lrr=`` for ``dual_lr=``).

    ``solver`` lists the Solver's own keywords (for the close matches and the message).

    Raises:
        TypeError: Naming the unknown keyword, the close matches, and the keywords accepted.
    """
    if not options:
        return
    if isinstance(formulation, Formulation):
        cls, label = type(formulation), f"the formulation {type(formulation).__name__}"
    elif isinstance(formulation, str):
        cls, label = formulation_class(formulation), f"formulation {formulation!r}"
    else:
        return  # resolve_formulation says what is wrong with it
    try:
        params = inspect.signature(cls).parameters.values()
    except (TypeError, ValueError):
        return
    if any(p.kind is p.VAR_KEYWORD for p in params):
        return
    taken = [p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    unknown = [k for k in options if k not in taken]
    if not unknown:
        return
    close = difflib.get_close_matches(unknown[0], [*solver, *taken], n=3)
    hint = f" (did you mean {' or '.join(map(repr, close))}?)" if close else ""
    plural = "s" if len(unknown) > 1 else ""
    raise TypeError(f"Solver() got an unexpected keyword argument{plural} {', '.join(map(repr, unknown))}{hint}; "
                    f"the Solver takes {', '.join(solver)}, and {label} takes "
                    f"{', '.join(taken) if taken else 'no options'}")
