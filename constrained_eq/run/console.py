"""The ``ceq`` console script: :func:`~constrained_eq.run.cli.main`, then an exit without the teardown.

Tearing down an interpreter that has imported torch, ``torch._dynamo`` (sympy) and matplotlib costs about
0.8 s of CPU: every module's dictionary and every object is freed one by one, long after the run's last
file was written and closed. :func:`console` leaves with :func:`os._exit` once the command has returned,
after flushing the standard streams and running the ``atexit`` handlers — so what the interpreter would do
at exit is still done, except freeing memory the operating system takes back anyway. Where something may
still need the interpreter (another non-daemon thread, a child process, a live process group) it exits
the usual way.
"""

from __future__ import annotations

import atexit
import os
import sys
import threading

__all__ = ["console"]


def _can_leave_at_once() -> bool:
    """No other non-daemon thread, no child process and no torch.distributed process group alive."""
    if any(t is not threading.main_thread() and not t.daemon and t.is_alive() for t in threading.enumerate()):
        return False
    if "multiprocessing" in sys.modules and sys.modules["multiprocessing"].active_children():
        return False
    dist = sys.modules.get("torch.distributed")
    return dist is None or not (dist.is_available() and dist.is_initialized())


def console() -> None:
    """Run ``ceq`` with ``sys.argv`` and exit with its status (``python -m constrained_eq`` is the same)."""
    from constrained_eq.run.cli import main

    for stream in (sys.stdout, sys.stderr):  # γ, λ, ≤ on a terminal that only takes ASCII: γ becomes \u03b3
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")
    status = main()
    if not _can_leave_at_once():
        sys.exit(status)
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except (OSError, ValueError):  # a closed pipe: what was printed is what could be
        status = status or 1
    atexit._run_exitfuncs()  # the handlers a normal exit would run (logging, torch, tqdm, ...)
    os._exit(status)
