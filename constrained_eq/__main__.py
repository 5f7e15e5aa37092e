"""``python -m constrained_eq …`` is the ``ceq`` command."""

import sys

from constrained_eq.run.cli import main

if __name__ == "__main__":
    sys.exit(main())
