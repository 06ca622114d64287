"""``make paper-cifar10`` (``scripts/paper_cifar10.py``) at smoke scale on CPU, end to end.

- Through ``make``: two arms of one seed run at once, complete, and leave only small records
  (no ``checkpoint.pt``) in the layout of ``make sweep-table1_cifar``
  (``<OUT>/table1_cifar/<overrides>/``), which ``scripts/collect.py`` tabulates beside the
  paper's numbers; ``--pack`` holds the same records in one archive.
- The time budget: runs still going when it ends are stopped by SIGTERM and record
  ``interrupted`` with their metrics so far; ``timeout -s TERM`` around the script does the same.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from fakes import write_cifar

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}
ENV.pop("OUT", None)  # the device tool's variable would replace the Makefile's OUT


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    # class-sorted like the JPEG copy's test batch; 100 test images: the smoke subset
    return write_cifar(tmp_path_factory.mktemp("data") / "cifar10", n_train=64, n_test=100, class_sorted_test=True)


def _manifests(runs: Path) -> list:
    return [json.loads(p.read_text()) for p in sorted((runs / "table1_cifar").glob("*/manifest.json"))]


def test_make_paper_cifar10_at_smoke_scale_writes_collectable_records(data, tmp_path):
    runs = tmp_path / "runs"
    out = subprocess.run(["make", "paper-cifar10", "SEEDS=0", "ARMS=sgd,lookahead_sgd", f"OUT={runs}",
                          f"DATA={data.parent}", "JOBS=2", "BUDGET=300", f"PYTHON={sys.executable}",
                          f"ARGS=--scale smoke --device cpu --pack {tmp_path / 'records.tar.gz'}"],
                         cwd=ROOT, capture_output=True, text=True, timeout=400, env=ENV)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-2000:]
    manifests = _manifests(runs)
    assert sorted((m["optim"], m["status"], m["seed"]) for m in manifests) == [
        ("lookahead_sgd", "completed", 0), ("sgd", "completed", 0)]
    assert all(m["config"]["experiment_name"] == "table1_cifar" and m["scale"] == "smoke" for m in manifests)
    assert all(m["config"]["trainer"]["checkpoint"] is False for m in manifests)
    assert not list(runs.rglob("*.pt"))
    names = {p.parent.name for p in (runs / "table1_cifar").glob("*/manifest.json")}
    assert "optim=sgd,scale=smoke,seed=0,task=cifar10,trainer.checkpoint=false" in names
    with open(runs / "table1_cifar" / "paper_cifar10_summary.csv", newline="") as f:
        assert [r["status"] for r in csv.DictReader(f)] == ["completed", "completed"]
    with tarfile.open(tmp_path / "records.tar.gz") as tar:
        assert sum(n.endswith("/metrics.csv") for n in tar.getnames()) == 2

    collected = subprocess.run([sys.executable, "scripts/collect.py", "--runs", str(runs), "--results",
                                str(tmp_path / "results"), "--scale", "smoke"], cwd=ROOT, capture_output=True,
                               text=True, timeout=120, env=ENV)
    assert collected.returncode == 0, collected.stderr
    table = (tmp_path / "results" / "table1_cifar" / "table.md").read_text()
    assert "| SGD | " in table and "(n=1)" in table and "Runs: 2; not completed: 0" in table


@pytest.mark.parametrize("stop", ["budget", "timeout -s TERM"])
def test_time_budget_stops_runs_with_interrupted_records(stop, data, tmp_path):
    runs = tmp_path / "runs"
    cmd = [sys.executable, "scripts/paper_cifar10.py", "--arms", "lookahead_sgd", "--seeds", "0", "--out", str(runs),
           "--jobs", "1", "--threads", "1", "--scale", "smoke", "--device", "cpu", "--data-root", str(data),
           "--min-run-s", "1", "--grace-s", "60", "--budget-s", "12" if stop == "budget" else "600",
           "trainer.max_steps=100000"]
    if stop != "budget":
        cmd = ["timeout", "-s", "TERM", "12", *cmd]
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=200, env=ENV)
    assert out.returncode in (0, 124), out.stdout[-3000:]  # 124: timeout's own code once it sent TERM
    (m,) = _manifests(runs)
    assert m["status"] == "interrupted" and 0 < m["steps"] < 100000
    with open(next((runs / "table1_cifar").glob("*/metrics.csv")), newline="") as f:
        rows = list(csv.DictReader(f))
    assert rows and any(r.get("test_acc") for r in rows)  # evaluations made before the stop are kept
    assert not list(runs.rglob("*.pt"))
