"""Datasets: the N-body simulator, loaders for QM9, ModelNet40 and CMU MoCap, synthetic miniatures.

Loaders never download: missing files raise :class:`FileNotFoundError` naming the folder and files.
This package must not import ``constrained_eq.core.solver.engine`` or training code. The QM9, ModelNet40 and
MoCap loaders live in their own modules (``constrained_eq.data.qm9`` …) and are imported from there.
"""

from constrained_eq.data.nbody import NBodyBatch, NBodyDataset, load_nbody, simulate_nbody

__all__ = ["NBodyDataset", "NBodyBatch", "load_nbody", "simulate_nbody"]
