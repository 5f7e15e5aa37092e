"""constrained_eq: constrained learning for PyTorch.

Write a training problem as data (an objective and constraints), pick how to solve it by name,
and let one Lagrangian engine run the primal–dual loop.
"""

from constrained_eq.constraints import Equality, Inequality, Penalty, Resilient, Target, register_target
from constrained_eq.homotopy import HomotopicLayer, gammas

__version__ = "0.1.0"

__all__ = [
    "Target",
    "register_target",
    "Equality",
    "Inequality",
    "Resilient",
    "Penalty",
    "HomotopicLayer",
    "gammas",
]
