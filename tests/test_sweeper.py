"""The suite's sweeper (hydra_plugins/lookahead_sweeper): every valid member runs, one summary, exit codes.

Hydra's basic sweeper stopped the whole sweep when one member could not be composed (no member
ran, exit 1) and exited 0 when members failed while running. Here a sweep over NQM smoke runs
mixes every kind of member: completed, diverged (a result), failed at composition (a wrong type,
an unknown optimizer) and failed at validation (a negative lr).
"""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _sweep(runs: Path, *args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "LOOKAHEAD_RUNS": str(runs), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "run.py", "-m", "task=nqm", "scale=smoke", "trainer.threads=1",
                           "experiment_name=sw", *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                          env=env)


def _summary(runs: Path) -> dict:
    with open(runs / "sw" / "sweep_summary.csv", newline="") as f:
        return {row["member"]: row for row in csv.DictReader(f)}


def test_bad_members_are_recorded_and_the_rest_run(tmp_path):
    out = _sweep(tmp_path, "optim=sgd,foo", "optim.lr=0.1,1000,abc,-1")
    assert out.returncode == 1, out.stderr
    rows = _summary(tmp_path)
    assert len(rows) == 8
    name = "experiment_name=sw,optim.lr={},optim=sgd,scale=smoke,task=nqm".format
    assert rows[name("0.1")]["status"] == "completed" and rows[name("0.1")]["metric"] == "val_loss"
    assert float(rows[name("0.1")]["value"]) > 0
    assert rows[name("1000")]["status"] == "diverged"
    assert rows[name("abc")]["status"] == "failed" and "optim.lr" in rows[name("abc")]["error"]
    assert rows[name("-1")]["status"] == "failed" and "Invalid optim.lr: -1" in rows[name("-1")]["error"]
    foo = [r for m, r in rows.items() if "optim=foo" in m]
    assert len(foo) == 4 and all(r["status"] == "failed" and "'optim/foo'" in r["error"] for r in foo)
    # The printed table says the same, one line per member, and no run directory is half-written.
    lines = out.stdout[out.stdout.index("sweep summary"):].splitlines()
    assert "8 members: 1 completed, 1 diverged, 6 failed" in lines[0] and len(lines) == 10
    assert not (tmp_path / "sw" / name("-1")).exists() and not (tmp_path / "sw" / name("abc")).exists()
    assert rows[name("-1")]["run_dir"] == ""  # nothing is left there to point at
    assert "Traceback" not in out.stdout


def test_a_sweep_whose_members_are_results_exits_0(tmp_path):
    out = _sweep(tmp_path, "optim=sgd", "optim.lr=0.1,1000")
    assert out.returncode == 0, out.stderr
    assert sorted(r["status"] for r in _summary(tmp_path).values()) == ["completed", "diverged"]
    # Relaunched, both are skipped (same config and data) and the summary is written again.
    again = _sweep(tmp_path, "optim=sgd", "optim.lr=0.1,1000")
    assert again.returncode == 0 and again.stdout.count("(same config and data)") == 2


@pytest.mark.slow
def test_submitit_local_runs_a_sweep_as_slurm_would(tmp_path):
    """hydra/launcher=submitit_local: each member in its own process, submitit's files in the sweep dir."""
    work = tmp_path / "cwd"
    work.mkdir()
    env = {**os.environ, "LOOKAHEAD_RUNS": str(tmp_path / "runs"), "OMP_NUM_THREADS": "1",
           "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, str(ROOT / "run.py"), "-m", "task=nqm", "scale=smoke",
                          "optim=sgd,lookahead_sgd", "experiment_name=sw", "hydra/launcher=submitit_local"],
                         cwd=work, capture_output=True, text=True, timeout=900, env=env)
    assert out.returncode == 0, out.stderr
    rows = _summary(tmp_path / "runs")
    assert sorted(r["status"] for r in rows.values()) == ["completed", "completed"]
    assert (tmp_path / "runs" / "sw" / ".submitit").is_dir() and list(work.iterdir()) == []
