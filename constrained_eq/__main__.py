"""``python -m constrained_eq …`` is the ``ceq`` command."""

from constrained_eq.run.console import console

if __name__ == "__main__":
    console()
