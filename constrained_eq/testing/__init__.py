"""Helpers for testing a solver: public, a layer just above ``core``.

Toy problems with closed-form solutions, and ``forbid_host_reads``, the audit that a block of code
reads nothing back from the device. ``assert_equivariant`` for your own models stays in
``constrained_eq.symmetry.testing``.
"""
