"""The run lock's file names its holder: the pid of the process that holds it, and nothing left by an earlier one."""

from __future__ import annotations

import os

from constrained_eq.training.run_folder import LOCK, RunLock, _holder


def test_the_lock_file_holds_exactly_the_holders_pid(tmp_path):
    (tmp_path / LOCK).write_text("99999999999\n")  # a longer pid, left by a holder that died
    lock = RunLock(tmp_path).acquire()
    try:
        assert (tmp_path / LOCK).read_text() == f"{os.getpid()}\n"
        assert _holder(tmp_path / LOCK) == f"process {os.getpid()}"
    finally:
        lock.release()
