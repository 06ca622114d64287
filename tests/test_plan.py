"""scripts/plan.py: members left per artifact, and their cost from committed manifests.

The fake results hold what collect writes (runs.csv with run names as Hydra names the run
directories, manifests/*.json) for the PTB table: two completed runs, one diverged (a result),
one failed (left), plus manifests that must not count towards the cost (two threads, resumed).
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from scripts import plan

PTB = "table3_ptb"


def _manifest(results: Path, artifact: str, run: str, status: str, wall_s: float, epochs: int = 6,
              threads: int = 1, resumed: bool = False, task: str = "ptb", model: str = "lstm",
              task_info: dict | None = None, phase: str = "", extra: dict | None = None) -> None:
    config = {"experiment_name": artifact, "trainer": {"epochs": epochs}, "task": {"name": task, "model": model}}
    m = {"status": status, "threads": threads, "resumed": resumed, "start_time": 1000.0,
         "end_time": 1000.0 + wall_s, "config": config, "task_info": task_info or {}, **(extra or {})}
    folder = results / artifact / "manifests" / phase
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{run}.json").write_text(json.dumps(m))


@pytest.fixture()
def results(tmp_path):
    runs = [("optim=sgd,scale=cpu,seed=0", "completed", 1800), ("optim=sgd,scale=cpu,seed=1", "completed", 2400),
            ("optim=adam,scale=cpu,seed=0", "diverged", 600), ("optim=adam,scale=cpu,seed=1", "failed", 60)]
    for run, status, wall in runs:
        _manifest(tmp_path, PTB, run, status, wall)
    _manifest(tmp_path, PTB, "optim=adam,scale=cpu,seed=2", "completed", 99999, threads=2)
    _manifest(tmp_path, PTB, "optim=sgd,scale=cpu,seed=2", "completed", 99999, resumed=True)
    frame = pd.DataFrame({"run": [r for r, _, _ in runs] + ["optim=adam,scale=cpu,seed=2"],
                          "status": [s for _, s, _ in runs] + ["completed"]})
    (tmp_path / PTB / "runs.csv").write_text(frame.to_csv(index=False))
    return tmp_path


def test_done_members_and_cost_of_the_rest_from_the_artifacts_own_runs(results):
    manifests = plan._manifests(results)
    row = plan.plan_row(PTB, [], results, manifests, plan.per_epoch_rates(manifests))
    # 4 optimizers x 3 seeds; done: 2 completed + 1 diverged + the two-thread run (a result,
    # only not a cost sample); the failed run is left.
    assert (row.planned, row.done, row.left) == (12, 4, 8)
    # Median wall of the completed one-thread, not-resumed runs: 1800 and 2400 s -> 2100 s
    # (the diverged run stopped early, the failed one never ran).
    assert row.hours_per_run == pytest.approx(2100 / 3600)
    assert row.core_hours == pytest.approx(8 * 2100 / 3600)


def test_an_artifact_without_runs_is_costed_per_epoch_from_the_same_task(results):
    manifests = plan._manifests(results)
    rates = plan.per_epoch_rates(manifests)
    assert rates[("ptb", "lstm")] == (pytest.approx(2100 / 3600 / 6), 2)
    row = plan.plan_row("ptb_k_alpha", [], results, manifests, rates)
    # 5 arms x 3 seeds, none run; 3 epochs at cpu scale (conf/experiment_scale/ablation_cpu.yaml).
    assert (row.planned, row.done) == (15, 0)
    assert row.hours_per_run == pytest.approx(3 * 2100 / 3600 / 6)


def test_no_comparable_run_is_unknown_and_rendered_as_such(results):
    manifests = plan._manifests(results)
    row = plan.plan_row("slow_bn_cifar", [], results, manifests, plan.per_epoch_rates(manifests))
    assert row.hours_per_run is None and row.core_hours is None and row.left == 3
    text = plan.render([row], {})
    assert "| slow_bn_cifar | `make sweep-slow_bn_cifar SCALE=cpu JOBS=2` | 3 | 0 | 3 | ? " in text
    assert "plus the unestimated slow_bn_cifar" in text


def test_main_writes_the_plan_for_every_artifact(results):
    assert plan.main(["--results", str(results)]) == 0
    text = (results / "plan.md").read_text()
    for artifact, args in plan.PLAN.items():
        assert f"| {artifact} | `make sweep-{artifact} SCALE=cpu JOBS=2" in text
    assert "| table3_ptb | `make sweep-table3_ptb SCALE=cpu JOBS=2` | 12 | 4 | 8 |" in text


def test_conv_runs_in_the_old_layout_stop_counting_once_the_recorded_layout_has_runs(tmp_path):
    cifar = dict(task="cifar10", model="resnet20", epochs=7)
    _manifest(tmp_path, "table1_cifar", "a", "completed", 7 * 270, **cifar)  # NCHW, before the layout was recorded
    manifests = plan._manifests(tmp_path)
    assert plan.per_epoch_rates(manifests)[("cifar10", "resnet20")] == (pytest.approx(270 / 3600), 1)
    _manifest(tmp_path, "table1_cifar", "b", "completed", 7 * 200, task_info={"memory_format": "channels_last"}, **cifar)
    manifests = plan._manifests(tmp_path)
    assert plan.per_epoch_rates(manifests)[("cifar10", "resnet20")] == (pytest.approx(200 / 3600), 1)


def test_study_runs_count_towards_the_rate_and_a_reused_copy_does_not(tmp_path):
    _manifest(tmp_path, "table3_ptb", "a", "completed", 6 * 300)
    _manifest(tmp_path, "ptb_sgd", "arm=sgd,trial=0", "completed", 6 * 400, phase="tune")
    rates = plan.per_epoch_rates(plan._manifests(tmp_path))
    assert rates[("ptb", "lstm")] == (pytest.approx(350 / 3600), 2)
    _manifest(tmp_path, "ptb_relatives", "arm=sgd,trial=0", "completed", 6 * 400, phase="tune",
              extra={"reused_from": {"study": "ptb_sgd", "phase": "tune", "run": "arm=sgd,trial=0"}})
    assert plan.per_epoch_rates(plan._manifests(tmp_path))[("ptb", "lstm")][1] == 2
