"""The fair-comparison protocol's pieces, on fakes: study files, the trial design, selection from
validation scores only, the expected best of n trials, paired intervals, pooling, the sweeper's
explicit members. The whole chain through real runs is tests/test_tune_chain.py."""

from __future__ import annotations

import dataclasses
import itertools
import math
from pathlib import Path

import numpy as np
import pytest
import yaml

from hydra_plugins.lookahead_sweeper.sweeper import _parse_members
from scripts import study as study_cli
from scripts.collect_lib.expected_max import expected_best
from scripts.collect_lib.paired import bootstrap_interval, paired_difference, t_interval
from scripts.collect_lib.records import Run
from scripts.collect_lib.selection import select, trials_table
from scripts.collect_lib.study_report import check_poolable, expected_max_table
from scripts.collect_lib.study_spec import (StudyError, declared_studies, load_study, members_override)

ROOT = Path(__file__).resolve().parents[1]
STUDIES = ["cifar10_adamw", "cifar10_relatives", "cifar10_sgd", "multi30k_adam", "nqm_smoke", "ptb_adam",
           "ptb_relatives", "ptb_sgd"]


# --- study files and the design -----------------------------------------------------------------

def test_every_declared_study_loads_with_an_equal_budget_and_disjoint_seeds():
    assert declared_studies() == STUDIES
    for name in STUDIES:
        s = load_study(name)
        assert s.metric.startswith("val_") and not set(s.tune_seeds) & set(s.final_seeds)
        members = s.tune_members()
        for arm in s.arms:  # the same number of trials for every arm
            assert sum(m.name.startswith(f"arm={arm.name},") for m in members) == s.budget * len(s.tune_seeds)
        if name != "nqm_smoke":
            assert s.budget == 8 and len(s.final_seeds) >= 5 and s.scale == "cpu"


def test_arms_shared_between_studies_get_the_same_trial_points():
    # The relatives studies repeat the arms of cifar10_sgd / cifar10_adamw / ptb_sgd with the same
    # protocol, spaces and design seed: their trials train the same configurations, so they
    # reuse those studies' runs (collect_lib/reuse.py checks the config fingerprints).
    def protocol(s):
        return [x for x in s.common_args() if not x.startswith(("experiment_name=", "study="))]

    shared = (("cifar10_sgd", "cifar10_relatives", ("sgd", "lookahead_sgd")),
              ("cifar10_adamw", "cifar10_relatives", ("adamw", "lookahead_adamw")),
              ("ptb_sgd", "ptb_relatives", ("sgd", "lookahead_sgd")))
    for base, relatives, arms in shared:
        a, b = load_study(base), load_study(relatives)
        assert base in b.reuse and protocol(a) == protocol(b)
        for arm in arms:
            assert a.arm(arm) == b.arm(arm) and a.points(a.arm(arm)) == b.points(b.arm(arm))


def test_the_design_is_deterministic_in_bounds_and_keyed_per_arm():
    s = load_study("cifar10_sgd")
    again = load_study("cifar10_sgd")
    assert s.tune_members() == again.tune_members() and s.design_sha256() == again.design_sha256()
    la = s.arm("lookahead_sgd")
    points = s.points(la)
    assert len(points) == 8 and len({p["optim.lr"] for p in points}) == 8
    for p in points:
        assert 0.3 <= p["optim.lr"] <= 7.5 and 1e-4 <= p["optim.weight_decay"] <= 1e-2
        assert isinstance(p["optim.lookahead.k"], int) and 2 <= p["optim.lookahead.k"] <= 10
        assert 0.3 <= p["optim.lookahead.alpha"] <= 0.95
        assert float(f"{p['optim.lr']:.4g}") == p["optim.lr"]  # 4 significant digits
    # An arm's points do not depend on the other arms (its Sobol seed is keyed by its name) ...
    alone = dataclasses.replace(s, arms=(la,))
    assert alone.points(la) == points
    # ... and a larger budget keeps the trials already run (the first N points of the same sequence).
    assert dataclasses.replace(s, budget=16).points(la)[:8] == points
    # The log dimension is searched on the log scale: 8 points cover most of the 1.4 decades.
    assert np.ptp(np.log([p["optim.lr"] for p in points])) > 0.6 * math.log(25)


def test_members_name_their_run_directories_and_carry_the_study_identity():
    s = load_study("nqm_smoke")
    first = s.tune_members()[0]
    assert first.name == "arm=sgd,trial=0,seed=1000,scale=smoke"
    assert first.overrides == ("optim=sgd", f"optim.lr={s.points(s.arms[0])[0]['optim.lr']!r}", "arm=sgd", "trial=0",
                               "seed=1000")
    assert s.common_args() == ["task=nqm", "scale=smoke", "protocol=paper", "experiment_name=nqm_smoke",
                               "study=nqm_smoke"]
    final = s.final_members({"sgd": {"optim.lr": 0.1}, "lookahead_sgd": {"optim.lr": 0.2, "optim.lookahead.k": 5}})
    # Seed-major (whole pairs first) and, for tuning, trial-major: a phase stopped part-way
    # leaves the arms level.
    assert [m.name for m in final] == ["arm=sgd,seed=0,scale=smoke", "arm=lookahead_sgd,seed=0,scale=smoke",
                                       "arm=sgd,seed=1,scale=smoke", "arm=lookahead_sgd,seed=1,scale=smoke"]
    assert [m.name.split(",")[:2] for m in s.tune_members()[:3]] == [
        ["arm=sgd", "trial=0"], ["arm=lookahead_sgd", "trial=0"], ["arm=sgd", "trial=1"]]
    assert final[1].overrides == ("optim=lookahead_sgd", "optim.lr=0.2", "optim.lookahead.k=5", "arm=lookahead_sgd",
                                  "seed=0")
    text = members_override(final[:1])
    assert text == ("++hydra.sweeper.members=[{name:'arm=sgd,seed=0,scale=smoke',"
                    "overrides:['optim=sgd','optim.lr=0.1','arm=sgd','seed=0']}]")
    # Another scale: other run names, the {scale} placeholder filled in.
    m30k = load_study("multi30k_adam")
    assert "+experiment_scale=fig7b_wmt_smoke" in m30k.common_args("smoke")
    assert m30k.tune_members("smoke")[0].name.endswith(",scale=smoke")


def _write_study(tmp_path: Path, **changes) -> Path:
    node = yaml.safe_load((ROOT / "conf" / "tune" / "nqm_smoke.yaml").read_text())
    for key, value in changes.items():
        node[key] = value
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(node))
    return path


@pytest.mark.parametrize("changes, message", [
    ({"select": {"metric": "test_loss", "mode": "min"}}, "must be a validation metric"),
    ({"final_seeds": [1000, 1]}, "must not reuse tuning seeds"),
    ({"budget": 0}, "positive integer"),
    ({"baseline": "adam"}, "is not an arm"),
    ({"overrides": ["seed=3"]}, "seed is set by the study itself"),
    ({"arms": {"sgd": {"overrides": ["optim=sgd"], "space": {}},
               "b": {"overrides": [], "space": {"optim.lr": {"log": [0.1, 1]}}}}}, "space is empty"),
    ({"arms": {"sgd": {"overrides": ["optim=sgd"], "space": {"optim.lr": {"log": [0, 1]}}},
               "b": {"space": {"optim.lr": {"log": [0.1, 1]}}}}}, "needs lo > 0"),
    ({"arms": {"sgd": {"overrides": ["optim.lr=0.1"], "space": {"optim.lr": {"log": [0.1, 1]}}},
               "b": {"space": {"optim.lr": {"log": [0.1, 1]}}}}}, "both a fixed override and a search dimension"),
    ({"budgett": 3}, "unknown key 'budgett'"),
])
def test_a_bad_study_file_is_one_clear_error(tmp_path, changes, message):
    with pytest.raises(StudyError, match=message):
        load_study(_write_study(tmp_path, **changes))


def test_an_unknown_study_names_the_declared_ones(capsys):
    assert study_cli.main(["points", "nosuch"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: no study 'nosuch'") and "nqm_smoke" in err and len(err.splitlines()) == 1


def test_final_refuses_a_selection_made_from_another_design(tmp_path, capsys):
    out = tmp_path / "nqm_smoke"
    out.mkdir()
    (out / "selected.yaml").write_text(yaml.safe_dump({"design_sha256": "0" * 64, "arms": {}}))
    assert study_cli.main(["final", "nqm_smoke", "--results", str(tmp_path), "--runs", str(tmp_path / "runs")]) == 2
    assert "was selected from another design" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()  # nothing was launched


# --- selection ----------------------------------------------------------------------------------

def _nested(values: dict) -> dict:
    out: dict = {}
    for key, value in values.items():
        node = out
        *parents, leaf = key.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return out


def _merge(a: dict, b: dict) -> dict:
    out = dict(a)
    for k, v in b.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def fake_trials(study, scores, status=None, threads=1, extra_final=None):
    """Runs of every trial of ``study``: ``scores[arm][trial]`` is the val score (None: no run)."""
    runs = []
    for arm in study.arms:
        for trial, point in enumerate(study.points(arm)):
            value = scores[arm.name][trial]
            if value is None:
                continue
            st = (status or {}).get((arm.name, trial), "completed")
            config = _merge({"study": study.name, "arm": arm.name, "trial": trial, "seed": study.tune_seeds[0],
                             "scale": study.scale, "task": {"name": study.task, "dataset": "none"},
                             "optim": {"name": arm.name}, "trainer": {"precision": "fp32", "channels_last": True}},
                            _nested(point))
            final = {study.metric: value, **((extra_final or {}).get((arm.name, trial), {}))}
            manifest = {"status": st, "scale": study.scale, "threads": threads, "device": "CPU x", "final": final}
            runs.append(Run(Path(f"/fake/arm={arm.name},trial={trial}"), manifest, config, []))
    return runs


@pytest.fixture()
def nqm():
    return load_study("nqm_smoke")


def test_selection_takes_the_best_validation_trial_and_ranks_diverged_last(nqm):
    # val_loss is minimized: sgd's best is trial 2; lookahead's trial 0 has the lowest number but diverged.
    runs = fake_trials(nqm, {"sgd": [1.2, 1.1, 0.9], "lookahead_sgd": [0.5, 1.0, 1.0]},
                       status={("lookahead_sgd", 0): "diverged"})
    trials = trials_table(nqm, runs, "smoke")
    chosen = select(nqm, trials)
    assert chosen["sgd"]["trial"] == 2 and chosen["sgd"]["score"] == 0.9
    assert chosen["sgd"]["values"] == nqm.points(nqm.arm("sgd"))[2]
    assert chosen["lookahead_sgd"]["trial"] == 1  # a tie (1.0, 1.0) goes to the lower trial id
    assert chosen["lookahead_sgd"]["diverged"] == 1 and chosen["lookahead_sgd"]["trials"] == 3
    assert bool(trials.loc[(trials["arm"] == "lookahead_sgd") & (trials["trial"] == 0), "diverged"].iloc[0])


def test_selection_never_reads_test_columns(nqm):
    scores = {"sgd": [1.2, 1.1, 0.9], "lookahead_sgd": [0.7, 1.0, 0.8]}
    # Test numbers that would favour every other trial, in the manifests and scrambled in the table.
    test = {(a, t): {"test_loss": 10 - s, "test_acc": s} for a, v in scores.items() for t, s in enumerate(v)}
    plain = select(nqm, trials_table(nqm, fake_trials(nqm, scores), "smoke"))
    trials = trials_table(nqm, fake_trials(nqm, scores, extra_final=test), "smoke")
    assert {"final_test_loss", "final_test_acc"} <= set(trials)  # shown in trials.csv ...
    assert select(nqm, trials) == plain  # ... never selected on
    rng = np.random.default_rng(0)
    for column in ("final_test_loss", "final_test_acc"):
        trials[column] = rng.permutation(trials[column].to_numpy())
    assert select(nqm, trials) == plain
    assert select(nqm, trials.drop(columns=[c for c in trials if "test" in c])) == plain


def test_selection_waits_for_the_whole_budget_of_every_arm(nqm):
    runs = fake_trials(nqm, {"sgd": [1.2, None, 0.9], "lookahead_sgd": [0.7, 1.0, 0.8]})
    trials = trials_table(nqm, runs, "smoke")
    assert (trials["status"] == "missing").sum() == 1
    with pytest.raises(StudyError, match="arm sgd lacks trial 1 of 3"):
        select(nqm, trials)
    failed = fake_trials(nqm, {"sgd": [1.2, 1.0, 0.9], "lookahead_sgd": [0.7, 1.0, 0.8]},
                         status={("sgd", 1): "failed"})  # not a result: it must be rerun, not skipped
    with pytest.raises(StudyError, match="lacks trial 1"):
        select(nqm, trials_table(nqm, failed, "smoke"))


def test_selection_refuses_runs_from_another_design_and_an_arm_that_only_diverged(nqm):
    runs = fake_trials(nqm, {"sgd": [1.2, 1.1, 0.9], "lookahead_sgd": [0.7, 1.0, 0.8]})
    runs[0].config["optim"]["lr"] = 0.123456
    with pytest.raises(StudyError, match="holds optim.lr=0.123456, but the design"):
        trials_table(nqm, runs, "smoke")
    every = {("sgd", t): "diverged" for t in range(3)}
    runs = fake_trials(nqm, {"sgd": [1.2, 1.1, 0.9], "lookahead_sgd": [0.7, 1.0, 0.8]}, status=every)
    with pytest.raises(StudyError, match="every trial of arm sgd diverged"):
        select(nqm, trials_table(nqm, runs, "smoke"))
    runs = fake_trials(nqm, {"sgd": [1.2, 1.1, 0.9], "lookahead_sgd": [0.7, 1.0, 0.8]})
    runs[1].manifest["final"] = {"test_loss": 1.0}
    with pytest.raises(StudyError, match="completed without val_loss"):
        trials_table(nqm, runs, "smoke")


# --- expected best of n trials --------------------------------------------------------------------

def test_expected_best_matches_a_hand_computed_example():
    # Scores 0.1, 0.5, 0.3. Without replacement: n=1 the mean 0.3; n=2 the three pairs have maxima
    # 0.3, 0.5, 0.5 -> 1.3/3; n=3 the best, 0.5. With replacement (Dodge et al. 2019):
    # n=2: 0.1 (1/9) + 0.3 (4/9 - 1/9) + 0.5 (1 - 4/9) = 3.5/9.
    df = expected_best([0.1, 0.5, 0.3])
    assert df["n"].tolist() == [1, 2, 3]
    assert df["expected_best"].tolist() == pytest.approx([0.3, 1.3 / 3, 0.5])
    assert df["expected_best_wr"].tolist() == pytest.approx([0.3, 3.5 / 9, 11.7 / 27])
    # std of the best of 2: maxima 0.3, 0.5, 0.5 -> sqrt(E[m^2] - E[m]^2)
    assert df["std"].tolist() == pytest.approx([np.std([0.1, 0.5, 0.3]), np.std([0.3, 0.5, 0.5]), 0.0])
    low = expected_best([0.1, 0.5, 0.3], higher_is_better=False)  # minima 0.1, 0.1, 0.3 for n=2
    assert low["expected_best"].tolist() == pytest.approx([0.3, 0.5 / 3, 0.1])


def test_expected_best_is_the_mean_best_over_all_subsets():
    v = np.random.default_rng(1).normal(size=7)
    df = expected_best(v)
    for n in range(1, 8):
        brute = np.mean([max(c) for c in itertools.combinations(v, n)])
        assert df.loc[n - 1, "expected_best"] == pytest.approx(brute)


def test_a_diverged_trial_counts_as_the_declared_score_or_the_worst_finite_one(nqm):
    runs = fake_trials(nqm, {"sgd": [1.2, 1.1, 0.9], "lookahead_sgd": [0.7, 1.0, 0.8]},
                       status={("sgd", 0): "diverged"})
    table = expected_max_table(nqm, trials_table(nqm, runs, "smoke"))
    sgd = table[table["arm"] == "sgd"]
    assert sgd["diverged_as"].iloc[0] == 1.1  # the worst finite val_loss of the study
    assert sgd["expected_best"].tolist() == pytest.approx(expected_best([1.1, 1.1, 0.9], False)["expected_best"])
    declared = dataclasses.replace(nqm, diverged=5.0)
    table = expected_max_table(declared, trials_table(declared, runs, "smoke"))
    assert table.loc[table["arm"] == "sgd", "expected_best"].iloc[0] == pytest.approx((5.0 + 1.1 + 0.9) / 3)


# --- paired differences -------------------------------------------------------------------------

def test_paired_intervals_on_a_hand_made_example():
    # d = 1, 2, 3, 4: mean 2.5, sd sqrt(5/3); t_{0.975, 3} = 3.182446305284263.
    arm, base = {0: 2.0, 1: 4.0, 2: 6.0, 3: 8.0, 9: 1.0}, {0: 1.0, 1: 2.0, 2: 3.0, 3: 4.0}  # seed 9 has no pair
    stats = paired_difference(arm, base)
    half = 3.182446305284263 * math.sqrt(5 / 3) / 2
    assert stats["n"] == 4 and stats["seeds"] == "0 1 2 3"
    assert stats["mean_diff"] == 2.5 and stats["sd_diff"] == pytest.approx(math.sqrt(5 / 3))
    assert (stats["t_low"], stats["t_high"]) == pytest.approx((2.5 - half, 2.5 + half))
    assert stats["arm_mean"] == 5.0 and stats["baseline_mean"] == 2.5
    lo, hi = stats["boot_low"], stats["boot_high"]
    assert 1.0 <= lo < 2.5 < hi <= 4.0  # inside the range of the d_s
    assert (lo, hi) == bootstrap_interval([1, 2, 3, 4])  # a fixed generator: the same bounds every time
    assert stats["supported"]  # both intervals above zero
    mixed = paired_difference({0: 1.0, 1: 3.0, 2: 2.0}, {0: 2.0, 1: 1.0, 2: 2.0})  # d = -1, 2, 0
    assert mixed["t_low"] < 0 < mixed["t_high"] and not mixed["supported"]
    one = paired_difference({0: 1.0}, {0: 0.0})
    assert one["n"] == 1 and math.isnan(one["t_low"]) and not one["supported"]
    assert bootstrap_interval([0.5, 0.5, 0.5]) == (0.5, 0.5)
    assert t_interval([1.0, 1.0]) == (1.0, 1.0)


def test_members_that_differ_in_precision_layout_or_threads_are_not_pooled(nqm):
    runs = fake_trials(nqm, {"sgd": [1.2, 1.1, 0.9], "lookahead_sgd": [0.7, 1.0, 0.8]})
    assert check_poolable(nqm, runs, "final") == ("fp32", True, 1)  # precision auto on CPU would read fp32 too
    runs[2].manifest["threads"] = 2
    with pytest.raises(StudyError, match=r"cannot pool its final runs.*5 x \(precision fp32, channels_last True, "
                                         r"1 threads\).*1 x \(precision fp32, channels_last True, 2 threads\)"):
        check_poolable(nqm, runs, "final")
    runs[2].manifest["threads"] = 1
    runs[3].config["trainer"]["precision"] = "auto"
    runs[3].manifest["device"] = "NVIDIA H100 (CUDA 12.4)"  # auto is bf16 there
    with pytest.raises(StudyError, match="precision bf16"):
        check_poolable(nqm, runs, "final")


def test_analysis_drops_manifests_and_diffs_no_run_stands_behind(nqm, tmp_path):
    # A manifest committed while its run was going (a fresh checkout does not restore it) and the
    # diff of a dirty-tree attempt since rerun from a clean tree must not outlive their runs.
    import json

    from scripts.collect_lib.study_report import analyze

    runs = []
    for run in fake_trials(nqm, {"sgd": [1.2, 1.1, 0.9], "lookahead_sgd": [0.7, 1.0, 0.8]}):
        folder = tmp_path / "runs" / run.path.name
        folder.mkdir(parents=True)
        (folder / "manifest.json").write_text(json.dumps(run.manifest))
        runs.append(dataclasses.replace(run, path=folder))
    tune = nqm.results_dir(tmp_path / "results") / "manifests" / "tune"
    final = tune.parent / "final"
    tune.mkdir(parents=True)
    final.mkdir()
    (tune / "arm=sgd,trial=0.diff").write_text("stale diff")
    (tune / "arm=sgd,trial=9.json").write_text('{"status": "running"}')
    (final / "arm=sgd,seed=0.json").write_text('{"status": "completed"}')
    analyze(nqm, runs, tmp_path / "results")
    assert sorted(p.name for p in tune.iterdir()) == sorted(f"{r.path.name}.json" for r in runs)
    assert (tune / "arm=sgd,trial=0.json").read_text() == json.dumps(runs[0].manifest)
    # Final manifests stay while there is no selected.yaml to tabulate them against.
    assert [p.name for p in final.iterdir()] == ["arm=sgd,seed=0.json"]


# --- the sweeper's explicit members -------------------------------------------------------------

def test_sweeper_members_are_lists_or_named_lists():
    assert _parse_members(None) is None
    assert _parse_members([["a=1"], {"name": "x=1,y=2", "overrides": ["b=2"]}]) == [(None, ["a=1"]),
                                                                                    ("x=1,y=2", ["b=2"])]
    for bad, message in [("a=1", "must be a list"), ([{"name": "a/b", "overrides": []}], "directory name"),
                         ([{"name": "a", "overrides": []}, {"name": "a", "overrides": []}], "two members are named"),
                         ([{"overrides": "a=1"}], "list of strings"), ([{"name": "a"}], "give name and overrides")]:
        with pytest.raises(ValueError, match=message):
            _parse_members(bad)


# --- the protocol knobs ---------------------------------------------------------------------------

def test_protocol_is_a_top_level_key_and_the_split_knobs_are_checked():
    from conftest import compose

    from experiments.errors import UserError
    from experiments.main import _validate

    val = _validate(compose(["task=cifar10", "protocol=val"]))
    assert (val.protocol, val.task.val_size, val.task.split_seed) == ("val", 5000, 0)
    paper = _validate(compose(["task=cifar10"]))  # the default: the paper's protocol, not a study member
    assert (paper.protocol, paper.study, paper.arm, paper.trial) == ("paper", "", "", -1)
    with pytest.raises(UserError, match="Invalid protocol: 'test'; choose one of paper, val"):
        _validate(compose(["task=nqm", "protocol=test"]))
    with pytest.raises(UserError, match="task.val_size"):
        _validate(compose(["task=cifar10", "task.val_size=0"]))
    with pytest.raises(UserError, match="Invalid trial"):
        _validate(compose(["task=nqm", "trial=-2"]))
