"""Shared fixtures: offline guard, composing the real configs, running a task through the loop."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Iterable

import pytest
import torch

from experiments.sweep import CONF_DIR, compose  # noqa: F401  (re-exported for the tests)


def pytest_collection_modifyitems(config, items):
    """Skip every ``@pytest.mark.cuda`` test, with one reason, where no CUDA device is visible;
    ``make test`` then reports them as skipped instead of failing them."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU (torch.cuda.is_available() is false)")
    for item in items:
        if item.get_closest_marker("cuda") is not None:
            item.add_marker(skip)


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


def sigterm_at_step(build, call: int):
    """Wrap a task builder so that SIGTERM arrives during the ``call``-th training step, as a
    scheduler would send it; the loop then checkpoints and stops with status ``interrupted``."""
    import os
    import signal

    def patched(cfg, device):
        task = build(cfg, device)
        loss, calls = task.loss, [0]

        def loss_then_signal(model, batch, carry):
            calls[0] += 1
            if calls[0] == call:
                os.kill(os.getpid(), signal.SIGTERM)
            return loss(model, batch, carry)

        task.loss = loss_then_signal
        return task

    return patched


def roundtrip(obj):
    """``obj`` through ``torch.save`` and ``torch.load`` (what a checkpoint file does to it)."""
    import io

    buffer = io.BytesIO()
    torch.save(obj, buffer)
    buffer.seek(0)
    return torch.load(buffer)


def smoke_cifar(root: Path, optim: str, *extra: str) -> list:
    """Overrides of a 12-step smoke CIFAR-10 run on the fake data at ``root`` (8 steps an epoch,
    evaluated every 4 steps, logged every 2)."""
    return ["task=cifar10", f"optim={optim}", "scale=smoke", f"data.root={root}", "trainer.max_steps=12",
            "trainer.eval_every=0.5", "trainer.log_every=2", *extra]


def metric_rows(path: Path) -> list:
    """A metrics.csv's rows without the wall-clock column (what a resumed run must reproduce)."""
    import csv

    with open(path, newline="") as f:
        return [{k: v for k, v in r.items() if k != "time_s"} for r in csv.DictReader(f)]


def assert_same_run(whole: Path, cut: Path) -> None:
    """Two run directories hold the same records and the same final checkpoint, bit for bit
    (the model and, where the run keeps one, its averaged copy)."""
    assert metric_rows(whole / "metrics.csv") == metric_rows(cut / "metrics.csv")
    a = torch.load(whole / "checkpoint.pt", weights_only=False)
    b = torch.load(cut / "checkpoint.pt", weights_only=False)
    for key in ("model", "averaged"):
        assert (a.get(key) is None) == (b.get(key) is None), key
        for name, value in (a.get(key) or {}).items():
            assert torch.equal(value, b[key][name]), f"{key}.{name}"


def interrupted_then_resumed(overrides, run_dir: Path, monkeypatch, call: int = 5):
    """Run ``overrides`` in ``run_dir``, SIGTERM it during the ``call``-th training step, run
    it again (it resumes from the checkpoint) and return the resumed run's manifest."""
    import pytest

    from experiments import tasks

    with monkeypatch.context() as m:
        m.setattr(tasks, "build_task", sigterm_at_step(tasks.build_task, call))
        with pytest.raises(SystemExit):
            train(overrides, run_dir)
    return train(overrides, run_dir)

