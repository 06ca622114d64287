"""The check every task schema applies to its ``limit_*`` knobs (kept torch-free: schemas load at composition)."""

from __future__ import annotations


def check_limits(config: object, *keys: str) -> None:
    """Each ``task.<key>`` must be 0 (the whole split) or a positive count."""
    for key in keys:
        value = getattr(config, key)
        if value < 0:
            raise ValueError(f"Invalid task.{key}: {value!r}; use 0 (the whole split) or a positive count")
