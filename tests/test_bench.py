"""The benchmarks run end to end in their quick modes on tiny fake data, and fail clearly."""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

import pytest

from conftest import sigterm_at_step

from fakes import write_cifar
from test_task_ptb import random_corpus
from test_task_wmt import write_parallel

BENCH = Path(__file__).resolve().parents[1] / "scripts" / "bench"
sys.path.insert(0, str(BENCH))  # the scripts import their helpers as top-level modules

import bench_before_after  # noqa: E402
import bench_eval  # noqa: E402
import bench_loop  # noqa: E402
import bench_machine  # noqa: E402


@pytest.fixture
def data(tmp_path, monkeypatch) -> Path:
    """A LOOKAHEAD_DATA folder with the smoke scale's datasets; translation caches under tmp_path."""
    root = tmp_path / "data"
    write_cifar(root / "cifar10", n_train=64, n_test=32)
    random_corpus(root / "ptb")
    write_parallel(root / "wmt14", "train", 60, seed=0)
    write_parallel(root / "wmt14", "newstest2014", 8, seed=1)
    monkeypatch.setenv("LOOKAHEAD_RUNS", str(tmp_path / "runs"))
    monkeypatch.setenv("LOOKAHEAD_DATA", str(root))
    return root


def _rows(path: Path) -> list:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_machine_benchmark_quick_mode(data, tmp_path):
    # Every part with one thread (the parallel part is then one one-thread job); dynamo's eager
    # backend exercises the compiled path without inductor's C++ compilation (on the cheapest
    # model to trace: dynamo takes seconds per model even so).
    out = bench_machine.main(["--quick", "--scale", "smoke", "--data", str(data), "--threads", "1",
                              "--compile-backend", "eager", "--compile-tasks", "ptb", "--parallel-tasks", "cifar10",
                              "--parallel-precisions", "fp32", "--out", str(tmp_path / "out")])
    assert out.name == "machine_cpu_quick"
    rows = _rows(out.with_suffix(".csv"))
    gemm = [r for r in rows if r["kind"] == "gemm"]
    assert {(r["dtype"], r["threads"]) for r in gemm} == {("float32", "1"), ("bfloat16", "1")}
    assert all(float(r["gflops"]) > 0 for r in gemm)
    steps = [r for r in rows if r["kind"] == "step"]
    assert {(r["task"], r["precision"], r["compile"]) for r in steps} == {
        (t, p, c) for t in ("cifar10", "airbench", "ptb", "wmt14") for p in ("fp32", "bf16")
        for c in (("True", "False") if t == "ptb" else ("False",))}
    for r in steps:
        assert float(r["throughput"]) > 0 and float(r["gflop_per_step"]) > 0 and float(r["pct_peak"]) > 0
        assert (r["compile_s"] != "") == (r["compile"] == "True")
    # The LSTM's FLOPs are counted although FlopCounterMode has no formula for oneDNN's layer.
    ptb = next(r for r in steps if r["task"] == "ptb")
    assert float(ptb["gflop_per_step"]) > 0
    par = [r for r in rows if r["kind"] == "parallel"]
    assert [(r["task"], r["precision"], r["jobs"], r["threads"]) for r in par] == [("cifar10", "fp32", "1", "1")]
    assert float(par[0]["throughput"]) > 0
    md = out.with_suffix(".md").read_text()
    assert "Machine: CPU" in md and "GEMM peak" in md and "Does `trainer.compile` pay?" in md


@pytest.mark.slow
def test_machine_benchmark_two_one_thread_jobs_at_once(data, tmp_path):
    out = bench_machine.main(["--quick", "--scale", "smoke", "--data", str(data), "--threads", "2", "--tasks",
                              "cifar10", "--precisions", "fp32", "--parts", "parallel", "--out", str(tmp_path / "out")])
    par = [r for r in _rows(out.with_suffix(".csv")) if r["kind"] == "parallel"]
    assert [(r["jobs"], r["threads"]) for r in par] == [("1", "2"), ("2", "1")]
    assert all(float(r["throughput"]) > 0 for r in par) and par[0]["vs_one_job"] == "1"


def test_eval_benchmark_quick_mode(data, tmp_path):
    out = bench_eval.main(["--quick", "--scale", "smoke", "--data", str(data), "--threads", "1",
                           "--cifar-batches", "8,32", "--out", str(tmp_path / "out")])
    rows = _rows(out.with_suffix(".csv"))
    estimates = [r for r in rows if r["kind"] == "estimate"]
    assert {(r["task"], r["precision"]) for r in estimates} == {(t, p) for t in ("cifar10", "airbench", "ptb", "wmt14")
                                                                for p in ("fp32", "bf16")}
    evals = [r for r in rows if r["kind"] == "eval"]
    for name in ("cifar10", "airbench"):
        assert {r["eval_batch"] for r in evals if r["task"] == name} == {"8", "32", "1000"}
    assert any(r["phase"] == "final" for r in evals if r["task"] == "wmt14")
    assert all(0 <= float(r["eval_after_pct"]) < 100 for r in estimates)


@pytest.mark.slow
def test_before_after_benchmark_times_both_trees(data, tmp_path):
    # HEAD against the working tree: both trees build and step every variant; a failing
    # variant would show as an error row instead of numbers.
    peak = tmp_path / "peak.csv"
    peak.write_text("kind,dtype,threads,gflops\ngemm,float32,1,100\ngemm,bfloat16,1,200\n")
    out = bench_before_after.main(["--rev", "HEAD", "--tasks", "ptb", "--reps", "1", "--steps", "2", "--scale", "smoke",
                                   "--data", str(data), "--peak", str(peak), "--out", str(tmp_path / "out")])
    rows = _rows(out.with_suffix(".csv"))
    assert [(r["before"], r["after"]) for r in rows] == [("HEAD fp32", "HEAD fp32"), ("HEAD bf16", "HEAD bf16"),
                                                          ("HEAD fp32", "HEAD bf16")]
    assert all(r["error"] == "" and float(r["per_cpu_s_ratio"]) > 0 and float(r["pct_peak_after"]) > 0 for r in rows)


def test_before_after_rows_pair_repetitions_and_read_the_idle_peak(tmp_path):
    peak = tmp_path / "peak.csv"
    peak.write_text("kind,dtype,threads,gflops\ngemm,float32,1,100\ngemm,float32,2,180\ngemm,bfloat16,1,300\n")
    assert bench_before_after.peaks(peak, 1) == {"fp32": 100.0, "bf16": 300.0}
    s = lambda wall, cpu: {"per_wall_s": wall, "per_cpu_s": cpu, "gflops": 50.0}  # noqa: E731
    samples = {("ptb", "before", "fp32"): [s(100, 200), s(50, 100)], ("ptb", "after", "fp32"): [s(150, 300), s(100, 150)],
               ("ptb", "before", "bf16"): [{"error": "boom"}], ("ptb", "after", "bf16"): [s(1, 1)]}
    rows = bench_before_after.summarise(samples, {"fp32": 100.0}, ["ptb"], "abc")
    fp32 = rows[0]
    assert fp32["pairs"] == 2 and fp32["per_wall_s_ratio"] == 1.75 and fp32["per_cpu_s_ratio"] == 1.5  # medians of 1.5/2, 1.5/1.5
    assert fp32["pct_peak_after"] == 50.0 and fp32["before"] == "abc fp32"
    assert rows[1]["error"] == "boom"


def test_loop_benchmark_says_when_the_run_was_interrupted(data, monkeypatch):
    args = argparse.Namespace(task="cifar10", optim="lookahead_sgd", scale="smoke", data_root=str(data / "cifar10"),
                              threads=1, device="cpu", batch_size=8)
    cfg = bench_loop.compose(args, 4, args.optim)
    # SIGTERM during the second training step, as a scheduler would send it.
    monkeypatch.setattr(bench_loop, "build_task", sigterm_at_step(bench_loop.build_task, 2))
    with pytest.raises(SystemExit, match=r"status 'interrupted' at step 2 of 6; no timing recorded"):
        bench_loop.suite_step_time(cfg, bench_loop.torch.device("cpu"))


def test_step_flops_count_the_lstm_recurrence(data):
    # FlopCounterMode has no formula for oneDNN's LSTM layer; task_step adds one. Check the total
    # against the hand count: 2 FLOPs per multiply-add, backward twice the forward.
    import task_step

    cfg = task_step.compose("ptb", "smoke", 1, "fp32", str(data))
    s = task_step.build("ptb", cfg, 1)
    x = s.batches[0][0]
    tokens, model = x.numel(), s.task.model
    matmuls = sum(r.weight_ih_l0.numel() + r.weight_hh_l0.numel() for r in model.rnns) + model.decoder.weight.numel()
    assert s.flops() == 3 * 2 * tokens * matmuls
