"""What a run tells its user: one line per event on stdout, and the same lines in ``run.log``.

Lines go through ``print`` (so they show whatever Hydra's logging setup is) and through the
``lookahead`` logger, which :func:`log_to` points at the run's ``run.log`` with timestamps.
The logger does not propagate, so Hydra's own handlers never print a line twice.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from pathlib import Path
from typing import Iterator

log = logging.getLogger("lookahead")
log.setLevel(logging.INFO)
log.propagate = False
log.addHandler(logging.NullHandler())  # no run.log attached: drop, never print a second copy


def say(message: str, *, error: bool = False) -> None:
    print(message, file=sys.stderr if error else sys.stdout, flush=True)
    (log.error if error else log.info)(message)


@contextlib.contextmanager
def log_to(path: Path) -> Iterator[None]:
    """Append the ``lookahead`` logger's records to ``path`` while the block runs."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path, delay=True)
    handler.setFormatter(logging.Formatter("[%(asctime)s][%(levelname)s] %(message)s"))
    log.addHandler(handler)
    try:
        yield
    finally:
        log.removeHandler(handler)
        handler.close()
