"""scale=smoke exercises Lookahead, and the task.limit_* subsets it evaluates on are fixed and fair.

Pinned:

- every Lookahead k that a config or sweep file can give (``k:`` under any ``lookahead:`` block in
  conf/, and every ``optim.lookahead.k`` sweep value) fits at least twice, plus one fast step, into
  the smoke length: ``trainer.max_steps >= 2 k + 1`` for every Lookahead optimizer on every task
  and for every experiment composed at smoke scale; per-update windows lie inside the run and
  hold a sync;
- end to end on the NQM, a smoke Lookahead run's reported (slow) weights have left the initial
  point for every such k (before, 4 steps with k = 5 or 10 reported the initial loss);
- the subsets (experiments/data/subset.py) do not depend on the run seed, are stratified and
  round-robin ordered, and a limit of 0 keeps a split whole, in its order;
- the paper and cpu scales set no limit (their runs see every example).

Per-task checks of the limits on fakes in the official layouts are in tests/test_task_*.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, Iterator, Set

import pytest
import torch
import yaml
from omegaconf import OmegaConf

from conftest import CONF_DIR, compose, train
from experiments.data.subset import SUBSET_SEED, stream_window, subset_index, subset_info
from experiments.nqm.problem import default_problem

CONF = Path(CONF_DIR)
TASKS = sorted(p.stem for p in (CONF / "task").glob("*.yaml"))
LOOKAHEAD_OPTIMS = sorted(p.stem for p in (CONF / "optim").glob("*.yaml")
                          if (yaml.safe_load(p.read_text()) or {}).get("lookahead"))
EXPERIMENTS = sorted(p.stem for p in (CONF / "experiment").glob("*.yaml"))


def _lookahead_blocks(node) -> Iterator[dict]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "lookahead" and isinstance(value, dict):
                yield value
            yield from _lookahead_blocks(value)


def config_ks() -> Dict[int, Set[str]]:
    """Every k a config file sets or a sweep sweeps, with the files that give it."""
    found: Dict[int, Set[str]] = {}
    for path in sorted(CONF.rglob("*.yaml")):
        data = yaml.safe_load(path.read_text()) or {}
        ks = [block["k"] for block in _lookahead_blocks(data) if "k" in block]
        params = ((data.get("hydra") or {}).get("sweeper") or {}).get("params") or {}
        ks += [int(v) for key, values in params.items() if key.endswith("lookahead.k")
               for v in str(values).split(",")]
        for k in ks:
            found.setdefault(int(k), set()).add(str(path.relative_to(CONF)))
    return found


KS = config_ks()
K_MAX = max(KS)


def test_the_scan_finds_the_grids_k():
    # conf/la/ and the sweeps use k = 5 and 10, conf/budget/ k = 2 (guards the scan itself).
    assert {2, 5, 10} <= set(KS) and "la/k10_a0.5.yaml" in KS[10] and "budget/k2_b320.yaml" in KS[2]


@pytest.mark.parametrize("task", TASKS)
def test_every_lookahead_optimizer_syncs_twice_at_smoke_scale(task):
    for optim in LOOKAHEAD_OPTIMS:
        cfg = compose([f"task={task}", f"optim={optim}", "scale=smoke"])
        steps, k = cfg.trainer.max_steps, cfg.optim.lookahead.k
        assert steps >= 2 * K_MAX + 1, f"{task}/{optim}: {steps} smoke steps < 2 x {K_MAX} + 1 ({sorted(KS[K_MAX])})"
        assert k in KS and steps >= 2 * k + 1


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_every_experiment_syncs_twice_at_smoke_scale(name):
    """The first job of each sweep at smoke scale (the experiment_scale/<artifact>_smoke.yaml
    files may change the length or the window); the grid's other ks are in KS."""
    from experiments.sweep import MAKE_ARGS, sweep_jobs

    jobs, _ = sweep_jobs([f"+experiment={name}", "scale=smoke", *MAKE_ARGS])
    cfg = compose(jobs[0])
    steps = cfg.trainer.max_steps
    assert steps >= 2 * K_MAX + 1
    window = cfg.trainer.per_update
    if window is not None:
        first = window.start_epoch  # in epochs; the smoke windows start at 0
        assert first == 0 and window.steps <= steps, f"{name}: the per-update window leaves the {steps}-step run"
        if cfg.optim.lookahead is not None:
            assert window.steps >= cfg.optim.lookahead.k, f"{name}: no sync inside the per-update window"


def _initial_nqm_loss(dim: int) -> float:
    a, sigma2, x0 = default_problem(dim).arrays()
    return float(0.5 * (a * (x0**2 + sigma2)).sum())


@pytest.mark.parametrize("k", sorted(KS))
def test_a_smoke_lookahead_run_moves_its_slow_weights(k, tmp_path):
    m = train(["task=nqm", "optim=lookahead_sgd", "scale=smoke", f"optim.lookahead.k={k}", "trainer.threads=1"],
              tmp_path)
    cfg = compose(["task=nqm", "scale=smoke"])
    initial = _initial_nqm_loss(cfg.task.dim)
    final = m["final"]
    assert m["status"] == "completed" and m["steps"] == cfg.trainer.max_steps
    assert final["val_loss"] == final["val_loss_slow"]  # the run reports phi
    assert final["val_loss_slow"] != pytest.approx(initial, rel=1e-6), f"k={k}: phi never moved"
    assert final["val_loss_slow"] < initial  # towards the minimum, as the fast weights went


def test_subsets_do_not_depend_on_the_run_seed_and_are_stratified():
    labels = torch.arange(10).repeat_interleave(100)  # class-sorted, 100 per class
    torch.manual_seed(123)
    a = subset_index(1000, 100, labels)
    torch.manual_seed(456)  # the global RNG (seeded from the run seed) plays no part
    assert torch.equal(a, subset_index(1000, 100, labels))
    assert len(set(a.tolist())) == 100 and torch.bincount(labels[a]).tolist() == [10] * 10
    # Round-robin order: every prefix is stratified too (per-update batches, BLEU on a prefix).
    assert torch.bincount(labels[a[:10]], minlength=10).tolist() == [1] * 10
    uneven = torch.tensor([0] * 900 + [1] * 90 + [2] * 10)
    assert torch.bincount(uneven[subset_index(1000, 100, uneven)]).tolist() == [90, 9, 1]


def test_a_limit_of_zero_or_beyond_the_split_keeps_it_whole_in_order():
    for limit in (0, 50, 80):
        assert torch.equal(subset_index(50, limit, torch.randint(3, (50,))), torch.arange(50))
    stream = torch.arange(30)
    for limit in (0, 30, 99):
        window, start = stream_window(stream, limit, boundary=3)
        assert window is stream and start == 0
    assert subset_info(train=(0, 50), test=(0, 10)) == {}
    assert subset_info(train=(0, 50), test=(4, 10)) == {
        "subset": {"seed": SUBSET_SEED, "train": {"used": 50, "of": 50}, "test": {"used": 4, "of": 10}}}


def test_a_stream_window_starts_at_a_sentence():
    eos = 0
    stream = torch.tensor([5, 6, eos, 7, 8, 9, eos, 4, eos, 3, 2, 1, eos] * 20)
    window, start = stream_window(stream, 17, boundary=eos)
    assert len(window) == 17 and torch.equal(window, stream[start : start + 17])
    assert start == 0 or stream[start - 1] == eos  # a sentence starts there
    assert stream_window(stream, 17, boundary=eos)[1] == start  # fixed: the same window every time


LIMITS = ("limit_train", "limit_test", "limit_val", "limit_eval", "limit_eval_tokens")


@pytest.mark.parametrize("scale", ["paper", "cpu"])
def test_paper_and_cpu_scales_use_every_example(scale):
    for task in TASKS:
        cfg = OmegaConf.to_container(compose([f"task={task}", "optim=sgd", f"scale={scale}"]).task)
        assert {key: cfg[key] for key in LIMITS if key in cfg} == {key: 0 for key in LIMITS if key in cfg}, task


# --- the smoke scale on the real datasets (slow; `make test-all` with LOOKAHEAD_DATA set) -------

MULTI30K = ["task.dataset=multi30k", "task.valid_split=val", "task.test_split=test_2016_flickr",
            "task.vocab_size=200"]  # conf/task_scale/wmt14_smoke.yaml: Multi30k holds 104 characters
REAL = {  # task -> (optimizer, folder under LOOKAHEAD_DATA, extra overrides, splits task_info.subset records)
    "cifar10": ("lookahead_sgd", "cifar10", [], {"train", "test"}),
    "ptb": ("lookahead_sgd", "ptb", [], {"valid", "test"}),
    "wmt14": ("lookahead_adam", "multi30k", MULTI30K, {"valid", "test"}),
    "imagenet": ("lookahead_sgd", "imagenet_tiny/tiny-imagenet-200-subset10", [], {"train", "val"}),
}


@pytest.mark.slow
@pytest.mark.parametrize("task", sorted(REAL))
def test_smoke_runs_on_the_real_data_on_fixed_subsets(task, tmp_path):
    import os

    if not os.environ.get("LOOKAHEAD_DATA"):
        pytest.skip("set LOOKAHEAD_DATA to the folder holding the datasets")
    optim, folder, extra, splits = REAL[task]
    root = Path(os.environ["LOOKAHEAD_DATA"]) / folder
    if not root.is_dir():
        pytest.skip(f"{root} not found")
    args = [f"task={task}", f"optim={optim}", "scale=smoke", f"data.root={root}", *extra]
    if task == "wmt14":
        args.append(f"task.cache_dir={tmp_path / 'cache'}")
    m = train(args, tmp_path / "run")
    assert m["status"] == "completed" and m["steps"] == compose(args).trainer.max_steps
    subset = m["task_info"]["subset"]
    assert subset["seed"] == SUBSET_SEED and set(subset) - {"seed"} == splits
    assert all(0 < s["used"] < s["of"] for name, s in subset.items() if name != "seed")
    target = m["target_metric"]
    assert m["final"][f"{target}_slow"] == m["final"][target]  # the run reports phi
    if task == "cifar10":  # the real test batch here is class-sorted: the subset holds every class
        from experiments.data.cifar import load_cifar

        cfg = compose(args).task
        test_y = load_cifar(root, 10).subset(cfg.limit_train, cfg.limit_test).test_y
        assert torch.bincount(test_y, minlength=10).tolist() == [cfg.limit_test // 10] * 10
