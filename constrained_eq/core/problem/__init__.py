"""The problem model: a constrained problem written as data.

What a constraint acts on (``Target``, the registry of targets, the built-in targets), the constraint
kinds and their right-hand sides, and ``ConstrainedProblem``. It imports nothing else from ``core``:
the formulations and the solver read it, never the other way round.
"""
