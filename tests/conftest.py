"""Shared fixtures: offline guard, composing the real configs, running a task through the loop."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Iterable

import pytest
import torch

CONF_DIR = str(Path(__file__).resolve().parents[1] / "conf")


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    """Tests never touch the network: any outbound connection fails loudly."""

    def guard(*args, **kwargs):
        raise RuntimeError("tests must not use the network")

    monkeypatch.setattr(socket.socket, "connect", guard)
    monkeypatch.setenv("WANDB_MODE", "disabled")
    torch.set_num_threads(1)


def compose(overrides: Iterable[str]):
    """Compose ``conf/`` exactly as run.py does, with the given command-line overrides."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from experiments.config import register_configs

    register_configs()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        return hydra_compose(config_name="config", overrides=list(overrides))


def train(overrides: Iterable[str], run_dir: Path):
    """Compose and run one job in ``run_dir`` through the real loop; returns the manifest."""
    import json

    from experiments.main import execute

    overrides = list(overrides)
    execute(compose(overrides), run_dir, overrides)
    return json.loads((run_dir / "manifest.json").read_text())
