"""``make gpu-check`` (``scripts/gpu_check.py``) before a GPU ever runs it.

Without CUDA the script stops at once with one line and exit 2; ``--cpu-dry-run`` runs every part
(the cuda tests, which are skipped; the throughput bench with two runs at once and a compiled
model; the sync and loop benchmarks) at a tiny size on the CPU, writes each part's records and
the summary under ``--out`` and nothing under ``results/``. The session script that wraps it
(``scripts/gpu_session.sh``: unpack, decode, check, paper runs, pack) runs as the ``slow`` test.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import torch

from fakes import write_cifar

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the behaviour without a GPU")
def test_without_cuda_one_line_and_exit_2(tmp_path):
    out = subprocess.run([sys.executable, "scripts/gpu_check.py", "--out", str(tmp_path)], cwd=ROOT,
                         capture_output=True, text=True, timeout=120, env=ENV)
    assert out.returncode == 2
    assert out.stderr.strip().count("\n") == 0 and out.stderr.startswith("error: no CUDA device visible")
    assert "--cpu-dry-run" in out.stderr and "Traceback" not in out.stderr
    assert not list(tmp_path.iterdir())  # nothing ran, nothing written


def test_cpu_dry_run_exercises_every_part(tmp_path):
    before = {p: p.stat().st_mtime for p in (ROOT / "results" / "bench").iterdir()}
    out = subprocess.run([sys.executable, "scripts/gpu_check.py", "--cpu-dry-run", "--out", str(tmp_path)],
                         cwd=ROOT, capture_output=True, text=True, timeout=240, env=ENV)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-2000:]
    summary = (tmp_path / "gpu_check_cpu_dryrun.md").read_text()
    for part in ("tests", "throughput", "sync", "loop"):
        assert f"| {part} | ok |" in summary, summary
    assert "CPU dry run" in summary
    for record in ("cuda_tests_cpu.xml", "throughput_cpu_tiny.md", "throughput_cpu_tiny.csv",
                   "lookahead_sync_cpu_quick.md", "loop_cpu.md"):
        assert (tmp_path / record).exists(), record
    throughput = (tmp_path / "throughput_cpu_tiny.csv").read_text().splitlines()
    assert throughput[1].startswith("reduce-overhead,2,True,ok,")  # two runs at once, compiled, both timed
    assert "skipped" in summary  # the cuda tests were collected and skipped
    assert {p: p.stat().st_mtime for p in (ROOT / "results" / "bench").iterdir()} == before


@pytest.mark.slow
def test_gpu_session_script_dry_run_end_to_end(tmp_path):
    data = write_cifar(tmp_path / "cifar10", n_train=64, n_test=100, class_sorted_test=True)
    out = tmp_path / "out"
    env = {**ENV, "DRY_RUN": "1", "OUT": str(out), "DATA": str(data), "PYTHON": sys.executable, "SEEDS": "0",
           "JOBS": "2", "BUDGET": "400", "PACK": str(tmp_path / "no_pack")}
    run = subprocess.run(["bash", "scripts/gpu_session.sh"], cwd=ROOT, capture_output=True, text=True,
                         timeout=480, env=env)
    assert run.returncode == 0, run.stdout[-3000:]
    files = {p.name for p in out.iterdir() if p.is_file()}
    assert {"gpu_session.log", "gpu_check_cpu_dryrun.md", "gpu_check_cpu_dryrun.tar.gz",
            "paper_cifar10_records.tar.gz"} <= files and len(files) <= 8  # the device tool returns 8 files
    with tarfile.open(out / "paper_cifar10_records.tar.gz") as tar:
        names = tar.getnames()
    assert sum(n.endswith("manifest.json") for n in names) == 2 and not any(n.endswith(".pt") for n in names)
