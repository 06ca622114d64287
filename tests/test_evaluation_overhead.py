"""Non-compute overhead: deterministic mode without its memory fill, and evaluation time on record."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch

from conftest import train
from experiments import runtime
from fakes import write_cifar


@pytest.fixture(scope="module")
def cifar_root(tmp_path_factory) -> Path:
    return write_cifar(tmp_path_factory.mktemp("cifar"), n_train=64, n_test=32)


def _args(root: Path) -> list:
    return ["task=cifar10", "optim=lookahead_sgd", "scale=smoke", f"data.root={root}", "trainer.max_steps=10",
            "trainer.eval_every=0.5", "trainer.log_every=2", "optim.lookahead.k=3"]


def _rows(path: Path) -> list:
    with open(path, newline="") as f:
        return [{k: v for k, v in r.items() if k != "time_s"} for r in csv.DictReader(f)]


def test_cpu_runs_are_bit_identical_without_the_uninitialized_memory_fill(cifar_root, tmp_path, monkeypatch):
    monkeypatch.setattr(torch.utils.deterministic, "fill_uninitialized_memory", True)  # restored afterwards
    seen = []
    configure = runtime.configure

    def with_fill(cfg, seed, device):  # what configure did before: deterministic mode with its NaN fill
        threads = configure(cfg, seed, device)
        torch.utils.deterministic.fill_uninitialized_memory = True
        seen.append(torch.empty(4).isnan().all().item())  # the fill is really on
        return threads

    off = train(_args(cifar_root), tmp_path / "off")
    assert torch.utils.deterministic.fill_uninitialized_memory is False  # configure turned it off on CPU
    assert torch.are_deterministic_algorithms_enabled()
    with monkeypatch.context() as m:
        m.setattr(runtime, "configure", with_fill)
        on = train(_args(cifar_root), tmp_path / "on")
    assert seen == [True] and off["status"] == on["status"] == "completed"
    a = torch.load(tmp_path / "off" / "checkpoint.pt", weights_only=False)
    b = torch.load(tmp_path / "on" / "checkpoint.pt", weights_only=False)
    for name, value in a["model"].items():  # weights and BatchNorm buffers
        assert torch.equal(value, b["model"][name]), name
    states, other = a["optimizer"]["state"], b["optimizer"]["state"]  # per parameter: phi beside SGD's momentum
    assert states and states.keys() == other.keys()
    assert all({"slow_param", "momentum_buffer"} <= set(state) for state in states.values())
    for i, state in states.items():
        for key, value in state.items():
            assert torch.equal(value, other[i][key]), (i, key)
    assert _rows(tmp_path / "off" / "metrics.csv") == _rows(tmp_path / "on" / "metrics.csv")
    assert off["final"] == on["final"]


def test_the_manifest_records_evaluation_time_apart_from_training_time(cifar_root, tmp_path):
    m = train(_args(cifar_root), tmp_path / "run")
    assert m["eval_time_s"] > 0 and m["time_s"] > 0
    # Training (time_s) and evaluation are disjoint parts of fit()'s wall time.
    assert m["wall_s"] >= m["time_s"] + m["eval_time_s"]
