"""Every experiment file composes and its sweep expands to the expected number of jobs.

Pinned, for every ``conf/experiment/*.yaml`` at ``scale=cpu`` (what `make sweep-<artifact>`
runs by default) and ``scale=smoke``:

- the number of jobs Hydra's basic sweeper makes from ``hydra.sweeper.params`` (expanded by
  Hydra's own parser, see ``experiments/sweep.py``) equals the count worked out by hand from the
  grid in ``EXPECTED``, and the "= N runs" the file's comment states;
- every job gets its own run directory (two jobs sharing one would make the second skip as
  "already completed");
- sampled members compose, validate against the schemas and say which artifact they belong to
  (``experiment_name``, the key collect groups runs by). Composing all ~460 members per scale
  takes minutes on 2 cores, so the sample is: at scale=cpu, for every swept key but the seed
  and every one of its values, the first job with that value, plus the last job; at
  scale=smoke the first and last job;
- command-line values replace the grid's, as the experiment files' comments promise.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from omegaconf import OmegaConf, open_dict

from conftest import CONF_DIR
from experiments.config import Config
from experiments.sweep import MAKE_ARGS, compose, run_dirname, sweep_jobs

EXPERIMENTS = sorted(p.stem for p in (Path(CONF_DIR) / "experiment").glob("*.yaml"))

# Jobs per sweep, by hand from each file's hydra.sweeper.params.
EXPECTED = {
    "fig10_per_update": 3,        # 3 seeds (experiment_scale follows scale: one value)
    "fig1_trajectory": 3,         # 3 seeds (experiment_scale follows scale: one value)
    "fig2_nqm": 180,              # 3 lr x 10 alpha x 2 momenta x 3 seeds
    "fig7b_wmt": 15,              # 5 wmt_arm x 3 seeds
    "fig8_inner_lr": 18,          # 2 la (off, k5_a0.5) x 3 lr x 3 seeds
    "fig8_momentum": 18,          # 2 la x 3 momenta x 3 seeds
    "report_batch_k": 18,         # 2 tasks x 3 budget (k, batch) pairs x 3 seeds
    "report_fast_decay": 12,      # 2 tasks x 2 optims x 3 seeds
    "report_inner_ablation": 36,  # 2 tasks x 3 inner optims x 2 la x 3 seeds
    "report_k_alpha": 24,         # 2 tasks x 4 la x 3 seeds
    "report_lr001": 12,           # 2 tasks x 2 optims x 3 seeds
    "report_radam": 12,           # 2 tasks x 2 optims x 3 seeds
    "table1_cifar": 50,           # 2 tasks x 5 optims x 5 seeds
    "table2_imagenet": 12,        # 2 optims x 2 imagenet_schedule x 3 seeds
    "table3_ptb": 12,             # 4 optims x 3 seeds
    "table5_k_alpha": 25,         # 5 la (off + 4 (k, alpha)) x 5 seeds
    "ptb_k_alpha": 15,            # 5 la (off + 4 (k, alpha)) x 3 seeds
    "slow_bn_cifar": 3,           # 3 seeds
    "bf16_parity": 6,             # 2 precisions x 3 seeds
    "airbench_cifar10": 3,        # 3 seeds
    "airbench_noema_cifar10": 3,  # 3 seeds
}


def _args(name: str, scale: str, *extra: str) -> list:
    return [f"+experiment={name}", f"scale={scale}", *MAKE_ARGS, *extra]


def _member(job: list) -> tuple:
    """Compose one job as the launcher does, drop the hydra node as Hydra's run_job does, and
    validate it; returns the typed config and checks the run directory name on the way."""
    cfg = compose(job, hydra=True)
    dirname = cfg.hydra.job.override_dirname
    with open_dict(cfg):
        del cfg["hydra"]
    obj = OmegaConf.to_object(cfg)
    assert isinstance(obj, Config)
    return obj, dirname


def _sample(jobs: list, every_value: bool) -> list:
    """First and last job; with ``every_value`` also the first job holding each override value
    not seen before (seeds aside), so every option of every swept key is composed once."""
    picks = [0, len(jobs) - 1]
    if every_value:
        seen = set()
        for i, job in enumerate(jobs):
            new = {o for o in job if not o.startswith("seed=")} - seen
            if new:
                seen |= new
                picks.append(i)
    return [jobs[i] for i in sorted(set(picks))]


def test_every_experiment_file_has_an_expected_count():
    assert sorted(EXPECTED) == EXPERIMENTS


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_expected_counts_match_the_files_own_comment(name):
    text = (Path(CONF_DIR) / "experiment" / f"{name}.yaml").read_text()
    stated = re.findall(r"Grid:.*?=\s*#?\s*(\d+) runs", text, re.DOTALL)
    assert stated == [str(EXPECTED[name])], f"{name}.yaml says {stated} runs"


@pytest.mark.parametrize("scale, every_value", [("cpu", True), ("smoke", False)])
@pytest.mark.parametrize("name", EXPERIMENTS)
def test_sweep_expands_to_the_expected_jobs_and_members_compose(name, scale, every_value):
    jobs, master = sweep_jobs(_args(name, scale))
    assert len(jobs) == EXPECTED[name]
    assert master.hydra.sweeper._target_.endswith("LookaheadSweeper")  # the grid semantics of BasicSweeper
    dirs = [run_dirname(job, master) for job in jobs]
    assert len(set(dirs)) == len(jobs), "two jobs of one sweep share a run directory"
    for job in _sample(jobs, every_value):
        cfg, dirname = _member(job)
        assert dirname == run_dirname(job, master)
        assert cfg.experiment_name == name and cfg.scale == scale
        assert cfg.trainer.threads == 1


def test_command_line_values_replace_the_grid():
    # table1_cifar.yaml: `make sweep-table1_cifar ARGS="task=cifar10 seed=0,1,2"` -> 1 x 5 x 3.
    jobs, _ = sweep_jobs(_args("table1_cifar", "cpu", "task=cifar10", "seed=0,1,2"))
    assert len(jobs) == 15 and all("task=cifar10" in job for job in jobs)
    assert {o for job in jobs for o in job if o.startswith("seed=")} == {"seed=0", "seed=1", "seed=2"}
    # table5_k_alpha.yaml: at cpu scale CIFAR-10 only, ARGS="task=cifar10": still 5 arms x 5 seeds.
    jobs, _ = sweep_jobs(_args("table5_k_alpha", "cpu", "task=cifar10"))
    assert len(jobs) == 25
    for job in (jobs[0], jobs[-1]):
        cfg, _ = _member(job)
        assert cfg.task.name == "cifar10" and cfg.experiment_name == "table5_k_alpha"


def test_lookahead_switched_off_is_labelled_by_its_inner_optimizer():
    # conf/la/disabled.yaml: the baseline arm of the k/alpha studies runs and is named as SGD.
    jobs, _ = sweep_jobs(_args("table5_k_alpha", "smoke"))
    off = [job for job in jobs if "la=disabled" in job]
    cfg, _ = _member(off[0])
    assert len(off) == 5 and cfg.optim.name == "sgd" and cfg.optim.lookahead is None


ABLATIONS = {"fig8_inner_lr", "fig8_momentum", "table5_k_alpha", "ptb_k_alpha", "report_k_alpha",
             "report_lr001", "report_fast_decay", "report_inner_ablation", "report_radam",
             "report_batch_k"}


def _epochs(name: str, scale: str, *extra: str) -> int:
    jobs, _ = sweep_jobs(_args(name, scale, *extra))
    return _member(jobs[0])[0].trainer.epochs


def test_ablation_grids_are_shorter_only_at_cpu_scale():
    # conf/experiment_scale/ablation_<scale>.yaml: the ablation grids run 3 epochs at cpu scale;
    # the headline tables keep the task's cpu length, and at paper scale nothing is shortened.
    uses = {n for n in EXPERIMENTS
            if "ablation_${scale}" in (Path(CONF_DIR) / "experiment" / f"{n}.yaml").read_text()}
    assert uses == ABLATIONS
    for name in sorted(ABLATIONS):
        assert _epochs(name, "cpu", "task=cifar10" if name != "ptb_k_alpha" else "seed=0") == 3, name
    assert _epochs("table1_cifar", "cpu", "task=cifar10") == 7
    assert _epochs("table3_ptb", "cpu") == 6
    assert _epochs("fig8_inner_lr", "paper") == _epochs("table1_cifar", "paper", "task=cifar10")
    assert _epochs("ptb_k_alpha", "paper") == _epochs("table3_ptb", "paper")


@pytest.mark.parametrize("name, fraction", [("fig10_per_update", 65 / 200), ("fig1_trajectory", 100 / 200)])
@pytest.mark.parametrize("scale", ["paper", "cpu"])
def test_per_update_window_sits_where_the_paper_put_it(name, fraction, scale):
    # Fig. 10 watches updates from epoch 65 of 200, Fig. 1 from epoch 100 of 200: at every scale
    # the window starts at the same fraction of the run, whatever the run's length there.
    jobs, _ = sweep_jobs(_args(name, scale))
    trainer = _member(jobs[0])[0].trainer
    assert trainer.per_update.start_epoch / trainer.epochs == pytest.approx(fraction)
