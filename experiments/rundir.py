"""Ownership of a run directory: one process at a time, and no leftovers from a dead one.

The lock is ``fcntl.flock`` on ``<run dir>/.lock``: the kernel releases it when the holding
process exits for any reason (kill -9 included), so a lock is never stale. The file holds the
holder's pid, which the refusal message names. Temporary files (``.<name>.<pid>.tmp``, see
``experiments/records.py``) that a dead writer left behind are removed once the lock is held.
"""

from __future__ import annotations

import errno
import fcntl
import os
import shutil
from pathlib import Path
from typing import Optional

from experiments.errors import UserError

LOCK = ".lock"
# What Hydra writes into a job's directory before the run starts; a run that fails before
# training removes these again when they are all the directory holds (no half-records).
HYDRA_LEFTOVERS = (".hydra", "run.log", LOCK)


class RunDirInUse(UserError):
    """Another live process holds the run directory."""


class RunDirLock:
    """Exclusive, non-blocking ownership of ``run_dir`` for the lifetime of this object."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir
        self._fd: Optional[int] = None

    def acquire(self) -> "RunDirLock":
        self.run_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.run_dir / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            os.close(fd)
            if err.errno in (errno.EAGAIN, errno.EACCES):
                raise RunDirInUse(f"run directory {self.run_dir} in use by pid {holder}; wait for it to finish "
                                  "or stop it (a killed run releases the directory and resumes when re-run)") from None
            raise
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd
        remove_temp_files(self.run_dir)
        return self

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor drops the flock
            self._fd = None

    def __enter__(self) -> "RunDirLock":
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def remove_temp_files(run_dir: Path) -> None:
    """Delete ``.*.tmp`` files a dead writer left (only called while holding the lock)."""
    for tmp in run_dir.glob(".*.tmp"):
        tmp.unlink(missing_ok=True)


def remove_if_only_leftovers(run_dir: Path) -> bool:
    """Remove ``run_dir`` when it holds nothing but what Hydra wrote before the run started.

    A run that fails before training (bad value, missing data) must leave no half-record; a
    directory that holds anything else (an earlier run's records) is left as it is.
    """
    if not run_dir.is_dir():
        return False
    entries = list(run_dir.iterdir())
    if any(e.name not in HYDRA_LEFTOVERS for e in entries):
        return False
    shutil.rmtree(run_dir, ignore_errors=True)
    try:  # the sweep's parent folder too, when this was its only member
        run_dir.parent.rmdir()
    except OSError:
        pass
    return True
