"""The solver: the engine that takes one primal-dual step of a problem under a formulation.

``Solver`` (the engine), the bridge to Cooper, the primal, variable and dual optimizers with the plain
SGD steps, the compiled step, the checkpoint state, the targets' dry run, the keyword check, the
feasibility verdicts and the problem's structure. It reads the problem model and the formulations;
neither imports it.
"""
