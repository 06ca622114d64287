"""The fair-comparison chain end to end on real runs: tune -> select -> final -> analyze -> figure.

The study is conf/tune/nqm_smoke.yaml (noisy quadratic model at smoke scale, seconds per run):
2 arms (SGD, Lookahead(SGD)) x 3 trials, one of each arm past the stability limit (diverged),
then 2 paired final seeds per arm. Entry points are the ones `make tune-/select-/final-/analyze-`
call (scripts/study.py's main; tune and final start `run.py -m` with the sweeper's explicit
members), `make collect` (scripts/collect.py) and `make figures` (scripts/make_figures.py).
"""

from __future__ import annotations

import json
import math
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from scipy import stats

from scripts import collect as collect_cli
from scripts import make_figures
from scripts import study as study_cli
from scripts.collect_lib.study_spec import load_study
from scripts.figures import study as study_figure

STUDY = "nqm_smoke"


def _manifests(folder: Path) -> dict:
    return {p.parent.name: json.loads(p.read_text()) for p in sorted(folder.glob("*/manifest.json"))}


@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    root = tmp_path_factory.mktemp("chain")
    runs, results = root / "runs", root / "results"
    where = ["--runs", str(runs), "--results", str(results)]
    old = os.environ.get("OMP_NUM_THREADS")
    os.environ["OMP_NUM_THREADS"] = "1"
    try:
        assert study_cli.main(["tune", STUDY, *where, "--threads", "1"]) == 0
        before = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(runs.rglob("manifest.json"))}
        assert study_cli.main(["tune", STUDY, *where, "--threads", "1"]) == 0  # relaunched
        after = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(runs.rglob("manifest.json"))}
        assert study_cli.main(["select", STUDY, *where]) == 0
        assert study_cli.main(["final", STUDY, *where, "--threads", "1"]) == 0
        assert study_cli.main(["analyze", STUDY, *where]) == 0
    finally:
        if old is None:
            os.environ.pop("OMP_NUM_THREADS", None)
        else:
            os.environ["OMP_NUM_THREADS"] = old
    return {"root": root, "runs": runs, "results": results / STUDY, "before": before, "after": after,
            "study": load_study(STUDY)}


def test_the_trials_are_the_design_points_in_readable_run_directories(chain):
    study = chain["study"]
    tune = _manifests(chain["runs"] / STUDY / "tune")
    assert sorted(tune) == sorted(m.name for m in study.tune_members())
    assert load_study(STUDY).tune_members() == study.tune_members()  # a pure function of the study file
    for arm in study.arms:
        for trial, point in enumerate(study.points(arm)):
            config = tune[f"arm={arm.name},trial={trial},seed=1000,scale=smoke"]["config"]
            assert (config["study"], config["arm"], config["trial"], config["seed"]) == (STUDY, arm.name, trial, 1000)
            assert config["optim"]["lr"] == point["optim.lr"]
            if arm.name == "lookahead_sgd":
                la = config["optim"]["lookahead"]
                assert (la["k"], la["alpha"]) == (point["optim.lookahead.k"], point["optim.lookahead.alpha"])
    assert sorted(m["status"] for m in tune.values()) == ["completed"] * 4 + ["diverged"] * 2
    summary = pd.read_csv(chain["runs"] / STUDY / "tune" / "sweep_summary.csv")
    assert sorted(summary["member"]) == sorted(tune)


def test_relaunching_tune_runs_nothing_new(chain):
    assert chain["before"] == chain["after"]  # same manifests, untouched (each member was skipped)
    assert len(chain["before"]) == 6


def test_selected_yaml_holds_the_best_validation_trial_of_each_arm(chain):
    study = chain["study"]
    selected = yaml.safe_load((chain["results"] / "selected.yaml").read_text())
    tune = _manifests(chain["runs"] / STUDY / "tune")
    assert (selected["study"], selected["budget"]) == (STUDY, 3)
    assert (selected["metric"], selected["mode"]) == ("val_loss", "min")
    assert selected["design_sha256"] == study.design_sha256()
    for arm in study.arms:
        ok = {m["config"]["trial"]: m["final"]["val_loss"] for m in tune.values()
              if m["config"]["arm"] == arm.name and m["status"] == "completed"}
        best = min(ok, key=ok.get)
        chosen = selected["arms"][arm.name]
        assert chosen["trial"] == best and chosen["score"] == pytest.approx(ok[best])
        assert chosen["values"] == study.points(arm)[best] and chosen["diverged"] == 1 and chosen["trials"] == 3
    trials = pd.read_csv(chain["results"] / "trials.csv")
    assert len(trials) == 6 and set(trials["status"]) == {"completed", "diverged"}


def test_test_metrics_do_not_change_the_selection(chain, tmp_path):
    runs = tmp_path / "runs"
    shutil.copytree(chain["runs"] / STUDY / "tune", runs / STUDY / "tune")
    for path in runs.rglob("manifest.json"):  # test numbers that rank every trial the other way round
        m = json.loads(path.read_text())
        m["final"].update(test_loss=-m["final"]["val_loss"], test_acc=m["final"]["val_loss"])
        path.write_text(json.dumps(m))
    results = tmp_path / "results"
    assert study_cli.main(["select", STUDY, "--runs", str(runs), "--results", str(results)]) == 0
    assert (results / STUDY / "selected.yaml").read_bytes() == (chain["results"] / "selected.yaml").read_bytes()
    assert "final_test_loss" in pd.read_csv(results / STUDY / "trials.csv")  # shown, never selected on


def test_the_final_runs_are_the_selected_values_on_paired_seeds(chain):
    selected = yaml.safe_load((chain["results"] / "selected.yaml").read_text())["arms"]
    final = _manifests(chain["runs"] / STUDY / "final")
    assert sorted(final) == ["arm=lookahead_sgd,seed=0,scale=smoke", "arm=lookahead_sgd,seed=1,scale=smoke",
                             "arm=sgd,seed=0,scale=smoke", "arm=sgd,seed=1,scale=smoke"]
    for m in final.values():
        c = m["config"]
        assert m["status"] == "completed" and c["trial"] == -1 and m["threads"] == 1
        assert c["optim"]["lr"] == selected[c["arm"]]["values"]["optim.lr"]


def test_paired_csv_is_the_per_seed_difference_with_its_intervals(chain):
    paired = pd.read_csv(chain["results"] / "paired.csv")
    assert list(paired.columns) == ["comparison", "arm", "baseline", "metric", "n", "seeds", "arm_mean",
                                    "baseline_mean", "mean_diff", "sd_diff", "t_low", "t_high", "boot_low",
                                    "boot_high", "supported", "arm_diverged", "baseline_diverged"]
    row = paired.iloc[0]
    assert (row["comparison"], row["metric"]) == ("lookahead_sgd - sgd", "val_loss")
    assert (row["n"], str(row["seeds"])) == (2, "0 1")
    final = _manifests(chain["runs"] / STUDY / "final")
    value = lambda arm, seed: final[f"arm={arm},seed={seed},scale=smoke"]["final"]["val_loss"]  # noqa: E731
    d = np.array([value("lookahead_sgd", s) - value("sgd", s) for s in (0, 1)])
    half = stats.t.ppf(0.975, 1) * d.std(ddof=1) / math.sqrt(2)
    assert row["mean_diff"] == pytest.approx(d.mean(), rel=1e-6)
    assert (row["t_low"], row["t_high"]) == pytest.approx((d.mean() - half, d.mean() + half), rel=1e-6)
    assert d.min() - 1e-9 <= row["boot_low"] <= row["boot_high"] <= d.max() + 1e-9
    table = (chain["results"] / "table.md").read_text()
    assert "3 trials per arm" in table and "seeds 0, 1 (paired by seed)" in table
    line = next(x for x in table.splitlines() if x.startswith("| lookahead_sgd - sgd | val_loss | 2 |"))
    assert ("no difference supported" in line) == (not row["supported"])
    expected = pd.read_csv(chain["results"] / "expected_max.csv")
    assert len(expected) == 6 and (expected.groupby("arm")["n"].max() == 3).all()
    best = expected[expected["n"] == 3].set_index("arm")["expected_best"]  # at n = N: the selected score
    selected = yaml.safe_load((chain["results"] / "selected.yaml").read_text())["arms"]
    assert best.to_dict() == pytest.approx({a: s["score"] for a, s in selected.items()})


def test_collect_writes_the_same_study_tables(chain, capsys):
    table = (chain["results"] / "table.md").read_bytes()
    args = ["--runs", str(chain["runs"]), "--results", str(chain["results"].parent), "--scale", "smoke"]
    assert collect_cli.main(args) == 0
    assert (chain["results"] / "table.md").read_bytes() == table


def test_a_study_whose_final_runs_differ_in_threads_is_not_pooled(chain, tmp_path, capsys):
    runs, results = tmp_path / "runs", tmp_path / "results"
    shutil.copytree(chain["runs"], runs)
    shutil.copytree(chain["results"], results / STUDY)
    path = runs / STUDY / "final" / "arm=sgd,seed=1,scale=smoke" / "manifest.json"
    m = json.loads(path.read_text())
    m["threads"] = 2
    path.write_text(json.dumps(m))
    capsys.readouterr()
    assert collect_cli.main(["--runs", str(runs), "--results", str(results), "--scale", "smoke"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: study nqm_smoke: cannot pool its final runs")
    assert study_cli.main(["analyze", STUDY, "--runs", str(runs), "--results", str(results)]) == 2


def test_the_study_figure_builds_from_the_analysis(chain, tmp_path):
    (module,) = [m for m in study_figure.artifacts() if m.ARTIFACT == STUDY]
    assert all((chain["results"].parent / f).is_file() for f in module.REQUIRES)
    paths = make_figures.build(module, chain["results"].parent, tmp_path)
    assert sorted(p.name for p in paths) == [f"{STUDY}.pdf", f"{STUDY}.png"]
    fig, axes = module.plot(module.summarize(module.load(chain["results"].parent)))
    assert all(ax.has_data() for ax in axes) and "scale: smoke" in fig.get_suptitle()
    # Lookahead's trials again at lr x alpha, beside SGD's at lr (the lr-sensitivity panel).
    assert axes[1].get_legend_handles_labels()[1] == ["sgd", "lookahead_sgd", "lookahead_sgd at lr × alpha"]


def test_a_fresh_runs_folder_goes_on_from_the_committed_results(chain, tmp_path):
    # Another checkout: the results are committed, the runs folder is empty. Every study command
    # first writes the committed finished runs back; tune then skips all of them and analyze
    # writes the same tables.
    results, runs = tmp_path / "results", tmp_path / "runs"
    shutil.copytree(chain["results"], results / STUDY)
    where = ["--runs", str(runs), "--results", str(results)]
    assert study_cli.main(["tune", STUDY, *where, "--threads", "1"]) == 0
    committed = {p.stem: p.read_bytes() for p in (chain["results"] / "manifests" / "tune").glob("*.json")}
    restored = {p.parent.name: p.read_bytes() for p in (runs / STUDY / "tune").glob("*/manifest.json")}
    assert restored == committed and len(restored) == 6  # skipped: byte for byte what was committed
    assert len(list((runs / STUDY / "final").glob("*/manifest.json"))) == 4
    assert study_cli.main(["analyze", STUDY, *where]) == 0
    for name in ("trials.csv", "paired.csv", "table.md"):
        assert (results / STUDY / name).read_bytes() == (chain["results"] / name).read_bytes(), name


def _reusing_study(tmp_path: Path, **changes) -> Path:
    """nqm_smoke's file with ``reuse: [nqm_smoke]``, an EMA arm added, and ``changes`` applied."""
    spec = yaml.safe_load((Path(study_cli.ROOT) / "conf" / "tune" / f"{STUDY}.yaml").read_text())
    spec["reuse"] = [STUDY]
    spec["arms"]["ema_sgd"] = {"overrides": ["optim=ema_sgd"],
                               "space": {"optim.lr": {"log": [0.05, 1.0]}, "optim.averaging.decay": {"uniform": [0.5, 0.9]}}}
    spec.update(changes)
    path = tmp_path / "nqm_more.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def test_a_study_that_reuses_another_trains_only_the_members_it_does_not_share(chain, tmp_path, capsys):
    # The SGD and Lookahead arms are nqm_smoke's (same space and design seed, so the same points
    # and, after selecting from the same trials, the same final values): they are taken from its
    # finished runs; only the EMA arm trains.
    runs, results = tmp_path / "runs", tmp_path / "results"
    shutil.copytree(chain["runs"], runs)
    path = _reusing_study(tmp_path)
    where = ["--runs", str(runs), "--results", str(results), "--threads", "1"]
    capsys.readouterr()
    assert study_cli.main(["tune", str(path), *where]) == 0
    out = capsys.readouterr().out
    assert "nqm_more/tune: 6 members taken from nqm_smoke's finished runs (same config and data)" in out
    source, mine = _manifests(runs / STUDY / "tune"), _manifests(runs / "nqm_more" / "tune")
    assert sorted(mine) == sorted(m.name for m in load_study(path).tune_members()) and len(mine) == 9
    for name, m in mine.items():
        if name.startswith("arm=ema_sgd"):
            assert "reused_from" not in m and m["git"] == source[next(iter(source))]["git"]
            continue
        src = source[name]
        assert m["reused_from"] == {"study": STUDY, "phase": "tune", "run": name, "experiment_name": STUDY,
                                    "study": STUDY}
        assert (m["config"]["study"], m["config"]["experiment_name"]) == ("nqm_more", "nqm_more")
        assert {k: v for k, v in m.items() if k not in ("config", "config_hash", "reused_from")} == \
            {k: v for k, v in src.items() if k not in ("config", "config_hash")}
        assert (runs / "nqm_more" / "tune" / name / "metrics.csv").read_bytes() == \
            (runs / STUDY / "tune" / name / "metrics.csv").read_bytes()
    assert study_cli.main(["select", str(path), "--runs", str(runs), "--results", str(results)]) == 0
    assert study_cli.main(["final", str(path), *where]) == 0
    assert "nqm_more/final: 4 members taken from nqm_smoke's finished runs" in capsys.readouterr().out
    assert study_cli.main(["analyze", str(path), "--runs", str(runs), "--results", str(results)]) == 0
    paired = pd.read_csv(results / "nqm_more" / "paired.csv")
    assert {"lookahead_sgd - sgd", "ema_sgd - sgd"} <= set(paired["comparison"])
    ours = paired.set_index(["comparison", "metric"]).loc[("lookahead_sgd - sgd", "val_loss")]
    theirs = pd.read_csv(chain["results"] / "paired.csv").set_index(["comparison", "metric"]).loc[
        ("lookahead_sgd - sgd", "val_loss")]
    assert ours["mean_diff"] == theirs["mean_diff"]  # the same runs


def test_a_member_whose_config_differs_is_not_taken(chain, tmp_path):
    from scripts.collect_lib.reuse import reuse_runs

    runs = tmp_path / "runs"
    shutil.copytree(chain["runs"], runs)
    study = load_study(_reusing_study(tmp_path))
    job = [*study.common_args(), "trainer.threads=1", "trainer.progress=false", "optim.momentum=0.5"]
    done = reuse_runs(study, "tune", study.tune_members(), job, "smoke", runs, tmp_path / "results")
    assert not done.taken and not (runs / "nqm_more").exists()
    assert len(done.differ) == 6 and all("optim.momentum: 0.0 -> 0.5" in why for why in done.differ.values())


def test_reuse_must_name_another_declared_study(tmp_path, capsys):
    for bad in (["nqm_more"], ["no_such_study"], "nqm_smoke"):
        path = _reusing_study(tmp_path, reuse=bad)
        assert study_cli.main(["points", str(path)]) == 2
        assert "reuse is a list of other declared studies" in capsys.readouterr().err
