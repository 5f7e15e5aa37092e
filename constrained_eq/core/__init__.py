"""The core layer: a constrained problem written as data, and the Lagrangian engine that solves it.

problem / constraints / targets → formulations → engine (with the Cooper bridge ``_cmp`` and the
optimizers ``_optim`` / ``dual_optimizers``). Nothing here imports the equivariance, model, data, task or
run layers. The public names are re-exported by :mod:`constrained_eq`.
"""
