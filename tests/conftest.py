"""Shared fixtures: offline guard, composing the real configs, running a task through the loop."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Iterable

import pytest
import torch

from experiments.sweep import CONF_DIR, compose  # noqa: F401  (re-exported for the tests)


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    """Tests never touch the network: any outbound connection fails loudly."""

    def guard(*args, **kwargs):
        raise RuntimeError("tests must not use the network")

    monkeypatch.setattr(socket.socket, "connect", guard)
    monkeypatch.setenv("WANDB_MODE", "disabled")
    torch.set_num_threads(1)


def train(overrides: Iterable[str], run_dir: Path):
    """Compose and run one job in ``run_dir`` through the real loop; returns the manifest."""
    import json

    from experiments.main import execute

    overrides = list(overrides)
    execute(compose(overrides), run_dir, overrides)
    return json.loads((run_dir / "manifest.json").read_text())
