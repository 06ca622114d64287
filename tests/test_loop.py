"""The shared loop: run records, bit-identical resume, divergence, clear failures."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import experiments.tasks as tasks
from conftest import assert_same_run, metric_rows, sigterm_at_step, smoke_cifar, train
from fakes import write_cifar

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def cifar_root(tmp_path_factory) -> Path:
    return write_cifar(tmp_path_factory.mktemp("cifar"), n_train=64, n_test=32)


_cifar = smoke_cifar
_rows = metric_rows


def _stop_at(monkeypatch, call: int) -> None:
    """Deliver SIGTERM to ourselves during the ``call``-th training step."""
    monkeypatch.setattr(tasks, "build_task", sigterm_at_step(tasks.build_task, call))


@pytest.mark.parametrize("optim", ["lookahead_sgd", "polyak_sgd", "lookahead_adam"])
def test_resume_after_interruption_is_bit_identical(optim, cifar_root, tmp_path, monkeypatch):
    # polyak_sgd averages from 0.8 of training; start earlier so the average spans the cut.
    extra = ["optim.averaging.start=0.2"] if optim == "polyak_sgd" else []
    whole = train(_cifar(cifar_root, optim, *extra), tmp_path / "whole")
    assert whole["status"] == "completed" and whole["steps"] == 12

    with monkeypatch.context() as m:
        _stop_at(m, 7)  # mid-epoch (8 steps/epoch) and mid-period (k=5)
        with pytest.raises(SystemExit) as stop:
            train(_cifar(cifar_root, optim, *extra), tmp_path / "cut")
    assert stop.value.code == 128 + signal.SIGTERM
    cut = (tmp_path / "cut" / "manifest.json").read_text()
    assert '"interrupted"' in cut and '"steps": 7' in cut

    resumed = train(_cifar(cifar_root, optim, *extra), tmp_path / "cut")
    assert resumed["status"] == "completed" and resumed["resumed"]
    assert_same_run(tmp_path / "whole", tmp_path / "cut")
    assert whole["final"] == resumed["final"]


def test_manifest_records_provenance(cifar_root, tmp_path):
    m = train(_cifar(cifar_root, "lookahead_sgd"), tmp_path)
    for key in ("config", "overrides", "git", "versions", "device", "seed", "status", "final", "start_time", "end_time"):
        assert key in m, key
    assert m["config"]["optim"]["lookahead"] == {"k": 5, "alpha": 0.8, "pullback": "none", "foreach": None,
                                                 "alpha_end": None, "alpha_power": 3.0, "buffers": False}
    assert {"test_acc", "test_acc_fast", "test_acc_slow"} <= set(m["final"])
    header = (tmp_path / "metrics.csv").read_text().splitlines()[0].split(",")
    assert header[:4] == ["step", "epoch", "time_s", "lr"]
    assert (tmp_path / "config.yaml").exists()


def test_completed_run_is_skipped(cifar_root, tmp_path, capsys):
    train(_cifar(cifar_root, "sgd"), tmp_path)
    before = (tmp_path / "metrics.csv").read_text()
    train(_cifar(cifar_root, "sgd"), tmp_path)
    assert "already completed" in capsys.readouterr().out
    assert (tmp_path / "metrics.csv").read_text() == before


def test_non_finite_loss_ends_the_run_as_diverged(tmp_path, monkeypatch):
    build = tasks.build_task

    def nan_after_two(cfg, device):
        task = build(cfg, device)
        loss, calls = task.loss, [0]

        def poisoned(model, batch, carry):
            calls[0] += 1
            value, carry = loss(model, batch, carry)
            return (value * float("nan") if calls[0] >= 3 else value), carry

        task.loss = poisoned
        return task

    monkeypatch.setattr(tasks, "build_task", nan_after_two)
    m = train(["task=nqm", "optim=lookahead_sgd", "scale=smoke", "trainer.max_steps=20"], tmp_path)
    assert m["status"] == "diverged" and m["steps"] == 4
    # A diverged run is a result: launching it again skips it and leaves its record as it was.
    before = (tmp_path / "manifest.json").read_text()
    again = train(["task=nqm", "optim=lookahead_sgd", "scale=smoke", "trainer.max_steps=20"], tmp_path)
    assert again["status"] == "diverged" and (tmp_path / "manifest.json").read_text() == before


def test_bn_recompute_logs_both_variants_and_leaves_training_as_it_was(cifar_root, tmp_path):
    m = train(_cifar(cifar_root, "lookahead_sgd", "trainer.slow_bn=both"), tmp_path / "both")
    assert {"test_acc_slow", "test_acc_slow_bn", "test_acc_fast"} <= set(m["final"])
    # Re-estimation draws training batches and runs BatchNorm in train mode, under a forked RNG
    # with the buffers put back: every other logged number equals the `keep` run's.
    train(_cifar(cifar_root, "lookahead_sgd"), tmp_path / "keep")
    both, keep = _rows(tmp_path / "both" / "metrics.csv"), _rows(tmp_path / "keep" / "metrics.csv")
    assert [{k: v for k, v in r.items() if not k.endswith("_slow_bn")} for r in both] == keep


def test_per_update_window_scores_fast_and_slow_weights_after_every_step(cifar_root, tmp_path):
    """Fig. 10's window: a row after every step, training untouched; with slow_bn=both the
    re-estimated score of phi only changes at a sync, since phi only moves there."""
    window = ["+experiment_scale=fig10_per_update_cpu", "trainer.per_update.start_epoch=0",
              "trainer.per_update.steps=7", "trainer.per_update.max_batches=1"]
    train(_cifar(cifar_root, "lookahead_sgd", *window, "trainer.slow_bn=both", "trainer.bn_batches=2"),
          tmp_path / "window")
    train(_cifar(cifar_root, "lookahead_sgd"), tmp_path / "plain")
    rows = _rows(tmp_path / "window" / "metrics.csv")
    updates = {int(r["step"]): r for r in rows if r["update_test_acc_slow_bn"]}
    assert sorted(updates) == list(range(1, 8))
    k = 5  # conf/task_optim/cifar10_lookahead_sgd.yaml
    score = {s: (r["update_test_loss_slow_bn"], r["update_test_acc_slow_bn"]) for s, r in updates.items()}
    assert len({score[s] for s in range(1, k)}) == 1 and score[k] == score[k + 1] != score[1]
    # Right after a sync theta = phi, scored with the same statistics.
    assert updates[k]["update_test_loss_fast"] == updates[k]["update_test_loss_slow"]
    # The window's evaluations leave the trajectory as it was.
    assert [r["train_loss"] for r in rows if r["train_loss"]] == \
        [r["train_loss"] for r in _rows(tmp_path / "plain" / "metrics.csv") if r["train_loss"]]


def _run_py(*args: str, env=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "run.py", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=120, env={**os.environ, "LOOKAHEAD_RUNS": str(env), "OMP_NUM_THREADS": "1"})


@pytest.mark.parametrize("args, message", [
    (["task=imagenette"], "Could not find 'task/imagenette'"),
    (["optim=lookahead_sgd", "optim.lookahead.k=0"], "Invalid optim.lookahead.k: 0"),
    (["optim=lookahead_sgd", "optim.lookahead.alpha=2"], "Invalid optim.lookahead.alpha: 2"),
])
def test_bad_input_gives_one_clear_error(args, message, tmp_path):
    out = _run_py("task=nqm", "scale=smoke", *args, env=tmp_path) if args[0] != "task=imagenette" else _run_py(*args, env=tmp_path)
    assert out.returncode != 0
    assert message in out.stderr + out.stdout
    assert "Traceback" not in out.stderr


def test_missing_dataset_stops_before_training(tmp_path):
    out = _run_py("task=cifar10", "scale=smoke", f"data.root={tmp_path / 'nowhere'}", env=tmp_path)
    assert out.returncode == 2
    assert "CIFAR-10 not found: looked for" in out.stderr and "make data-cifar10" in out.stderr
    assert "Traceback" not in out.stderr
