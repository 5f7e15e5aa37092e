"""Dataset loaders (QM9, ModelNet40, CMU MoCap) and synthetic miniatures for offline tests.

Loaders never download: missing files raise :class:`FileNotFoundError` naming the folder and files.
This package must not import ``constrained_eq.engine`` or training code.
"""
