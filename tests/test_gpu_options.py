"""Trainer options for the GPU path, checked on CPU: compile mode and backend, no checkpoints.

- ``trainer.compile_mode`` / ``trainer.compile_backend`` reach ``torch.compile`` exactly as given,
  and a compiled smoke run completes (aot_eager: fast; inductor with ``reduce-overhead``, which
  on CPU compiles without CUDA graphs, is the ``slow`` test);
- an unknown mode is one clear config error;
- ``trainer.checkpoint=false`` writes no ``checkpoint.pt``, also when SIGTERM stops the run: the
  run still records ``interrupted`` with its metrics so far (what a GPU job's time budget relies on).
"""

from __future__ import annotations

import math
import signal

import pytest
import torch
from omegaconf import OmegaConf

import experiments.tasks as tasks
from conftest import compose, sigterm_at_step, train
from fakes import write_cifar


@pytest.fixture(scope="module")
def cifar_root(tmp_path_factory):
    return write_cifar(tmp_path_factory.mktemp("cifar"), n_train=64, n_test=32)


def _cifar(root, *extra):
    return ["task=cifar10", "optim=lookahead_sgd", "scale=smoke", f"data.root={root}", "trainer.device=cpu",
            "trainer.max_steps=12", "trainer.eval_every=0.5", "trainer.log_every=2", *extra]


def test_compile_mode_and_backend_reach_torch_compile(cifar_root, tmp_path, monkeypatch):
    calls, real = [], torch.compile

    def spy(model, **kwargs):
        calls.append(kwargs)
        return real(model, **kwargs)

    monkeypatch.setattr(torch, "compile", spy)
    m = train(_cifar(cifar_root, "trainer.compile=true", "trainer.compile_mode=reduce-overhead",
                     "trainer.compile_backend=aot_eager"), tmp_path)
    assert calls == [{"mode": "reduce-overhead", "backend": "aot_eager"}]
    assert m["status"] == "completed" and m["steps"] == 12
    assert math.isfinite(m["final"]["test_loss"])


def test_compile_defaults_are_torchs():
    t = OmegaConf.to_object(compose(_cifar("/nowhere"))).trainer
    assert (t.compile, t.compile_mode, t.compile_backend, t.checkpoint) == (False, "default", "inductor", True)


def test_unknown_compile_mode_is_a_config_error():
    with pytest.raises(Exception, match="Invalid trainer.compile_mode: 'fastest'; choose one of default, "
                                        "reduce-overhead, max-autotune"):
        OmegaConf.to_object(compose(_cifar("/nowhere", "trainer.compile_mode=fastest")))


@pytest.mark.slow
def test_inductor_reduce_overhead_trains_on_cpu(cifar_root, tmp_path):
    # About a minute of C++ compilation on 2 cores; on CPU inductor skips the CUDA graphs.
    m = train(_cifar(cifar_root, "trainer.compile=true", "trainer.compile_mode=reduce-overhead"), tmp_path)
    assert m["status"] == "completed" and math.isfinite(m["final"]["test_loss"])


def test_no_checkpoint_written_when_disabled(cifar_root, tmp_path):
    m = train(_cifar(cifar_root, "trainer.checkpoint=false"), tmp_path)
    assert m["status"] == "completed"
    assert not (tmp_path / "checkpoint.pt").exists()
    assert (tmp_path / "metrics.csv").exists()


def test_sigterm_without_checkpoints_records_interrupted_with_metrics(cifar_root, tmp_path, monkeypatch):
    monkeypatch.setattr(tasks, "build_task", sigterm_at_step(tasks.build_task, 7))
    with pytest.raises(SystemExit) as stop:
        train(_cifar(cifar_root, "trainer.checkpoint=false"), tmp_path)
    assert stop.value.code == 128 + signal.SIGTERM
    manifest = (tmp_path / "manifest.json").read_text()
    assert '"interrupted"' in manifest and '"steps": 7' in manifest
    assert not (tmp_path / "checkpoint.pt").exists()
    rows = (tmp_path / "metrics.csv").read_text().splitlines()
    assert any("test_acc" in r for r in rows[:1]) and len(rows) > 2  # header with eval columns, rows so far
