"""The run layer: problem files, building and training a problem, run folders, reports, plots and the CLI.

It sits on top of every other layer and nothing below imports it. ``ceq run`` is
:func:`constrained_eq.run.cli.main`.
"""
