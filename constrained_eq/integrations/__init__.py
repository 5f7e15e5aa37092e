"""Training where users already train: PyTorch Lightning and Hugging Face Accelerate.

* :mod:`constrained_eq.integrations.lightning` — :class:`~constrained_eq.integrations.lightning.SolverModule`,
  a ``LightningModule`` whose training step is one Solver step (``pip install "constrained_eq[lightning]"``).
* :mod:`constrained_eq.integrations.accelerate` — ``prepare`` and ``SolverCheckpoint``: the Solver on a model,
  optimizer and loader prepared by an ``Accelerator`` (``pip install "constrained_eq[accelerate]"``).

Neither framework is a dependency of the package: this module imports nothing, and
``import constrained_eq`` never imports it. Import the submodule you use.
"""
