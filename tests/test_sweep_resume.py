"""A re-launched sweep skips its completed runs and does only what is missing.

test_loop.py::test_completed_run_is_skipped pins the skip for one run (experiments.main.execute);
this pins it end to end through `python run.py -m` (Hydra's multirun, the run directories it
names, the loop), as `make sweep-<artifact>` relaunches a sweep: a two-member NQM smoke sweep is
launched, one member's directory is removed (a member that never ran), and the same command is
launched again. Marked slow (two subprocess sweeps, about 10 s): `make test-all`.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ARGS = ["-m", "task=nqm", "scale=smoke", "optim=sgd,lookahead_sgd", "experiment_name=resume_test",
        "trainer.threads=1", "hydra/hydra_logging=disabled", "hydra/job_logging=disabled"]


def _sweep(runs: Path) -> str:
    env = {**os.environ, "LOOKAHEAD_RUNS": str(runs), "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "run.py", *ARGS], cwd=ROOT, capture_output=True, text=True,
                         timeout=300, env=env)
    assert out.returncode == 0, out.stderr
    return out.stdout


@pytest.mark.slow
def test_relaunched_sweep_skips_completed_runs(tmp_path):
    _sweep(tmp_path)
    sweep = tmp_path / "resume_test"
    sgd = sweep / "experiment_name=resume_test,optim=sgd,scale=smoke,task=nqm"
    lookahead = sweep / "experiment_name=resume_test,optim=lookahead_sgd,scale=smoke,task=nqm"
    before = {name: (sgd / name).read_bytes() for name in ("manifest.json", "metrics.csv", "checkpoint.pt")}
    assert json.loads(before["manifest.json"])["status"] == "completed"
    shutil.rmtree(lookahead)

    out = _sweep(tmp_path)
    assert out.count("already completed") == 1 and f"skip {sgd}: already completed" in out
    assert {name: (sgd / name).read_bytes() for name in before} == before  # not touched
    redone = json.loads((lookahead / "manifest.json").read_text())
    assert redone["status"] == "completed" and not redone["resumed"]
