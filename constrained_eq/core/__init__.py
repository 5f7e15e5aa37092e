"""The core layer: a constrained problem written as data, and the Lagrangian engine that solves it.

Three subpackages, each importing only those before it: ``problem`` (targets, constraints, the problem),
``formulations`` (how each constraint enters the Lagrangian) and ``solver`` (the engine, the Cooper
bridge, the optimizers, the compiled step, the checkpoint state, feasibility). Nothing here imports the
equivariance, model, data, task or run layers. The public names are re-exported by :mod:`constrained_eq`.
"""
