"""`make collect` on the committed miniature sweep reproduces the committed tables exactly.

tests/data/mini_sweep/runs/ holds six NQM smoke runs of one artifact (`mini_sweep`): SGD and
Lookahead(SGD) with seeds 0 and 1 (completed), SGD at lr 1000 (diverged) and Lookahead with
alpha 1.5 (failed at validation: a manifest with only status and error, its identity in
.hydra/). tests/data/mini_sweep/expected/mini_sweep/ holds what collect wrote for them; after a
deliberate change to the tables' format, regenerate it with

    python scripts/collect.py --runs tests/data/mini_sweep/runs --results tests/data/mini_sweep/expected \
        --scale smoke --any-artifact

and review the diff. Pinned: byte-identical output, identical bytes on a second collect, the
statuses and statistics checked by hand below, a clear error for an unknown artifact, and a
failed run labelled from Hydra's (unresolved) record of its config.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest
from omegaconf import OmegaConf

from scripts import collect as collect_cli
from experiments.sweep import compose
from scripts.collect_lib import collect

DATA = Path(__file__).resolve().parent / "data" / "mini_sweep"
RUNS, EXPECTED = DATA / "runs", DATA / "expected"
# The mini sweep is a scratch artifact at smoke scale: collect it as such.
MINI = {"scales": ("smoke",), "any_artifact": True}


def _files(root: Path) -> dict:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_collect_reproduces_the_committed_tables(tmp_path):
    written = collect(RUNS, tmp_path, **MINI)
    assert list(written) == ["mini_sweep"]
    tables = ["mini_sweep/curves.csv", "mini_sweep/excluded.csv", "mini_sweep/runs.csv", "mini_sweep/summary.csv"]
    manifests = sorted(f"mini_sweep/manifests/{p.parent.name}.json" for p in (RUNS / "mini_sweep").glob("*/manifest.json")
                       if "alpha=1.5" not in p.parent.name)  # the failed member is counted, not tabulated
    assert sorted(_files(tmp_path)) == sorted(tables + manifests)
    expected = _files(EXPECTED)
    for name, data in _files(tmp_path).items():
        assert data == expected[name], f"{name} differs from tests/data/mini_sweep/expected/{name}"


def test_collecting_twice_gives_identical_bytes(tmp_path):
    collect(RUNS, tmp_path / "a", **MINI)
    first = _files(tmp_path / "a")
    collect(RUNS, tmp_path / "a", **MINI)  # rewrites in place
    collect(RUNS, tmp_path / "b", **MINI)
    assert _files(tmp_path / "a") == first == _files(tmp_path / "b")


def test_the_committed_tables_record_every_outcome():
    runs = pd.read_csv(EXPECTED / "mini_sweep" / "runs.csv")
    assert runs["status"].value_counts().to_dict() == {"completed": 4, "diverged": 1}
    # The failed member is counted beside the tables, never tabulated.
    excluded = pd.read_csv(EXPECTED / "mini_sweep" / "excluded.csv")
    assert excluded["status"].tolist() == ["failed"]
    failed = excluded.iloc[0]
    assert failed["optim.lookahead.alpha"] == 1.5 and failed["optim"] == "lookahead_sgd"
    assert failed["error"] == "Invalid config: Invalid optim.lookahead.alpha: 1.5; alpha must lie in [0, 1]"
    diverged = runs[runs["status"] == "diverged"].iloc[0]
    assert diverged["optim.lr"] == 1000 and diverged["final_train_loss"] > 1e5
    assert math.isnan(diverged["best_val_loss"])

    summary = pd.read_csv(EXPECTED / "mini_sweep" / "summary.csv")
    sgd = summary[(summary["optim"] == "sgd") & (summary["optim.lr"] == 0.5)].set_index("metric")
    # final_val_loss of SGD, seeds 0 and 1: 1.203349861880592 and 1.3089351698431968 (manifests).
    # mean = 1.2561425159; std (ddof 1) = |a - b| / sqrt(2) = 0.0746600873;
    # ci95 = t_{0.975, 1} * std / sqrt(2) = 12.7062047 * 0.0527926540 = 0.6707942701.
    row = sgd.loc["final_val_loss"]
    assert (row["n"], row["n_runs"]) == (2, 2)
    # (The tables keep 8 significant digits.)
    assert row["mean"] == pytest.approx(1.2561425159, rel=1e-7)
    assert row["std"] == pytest.approx(0.0746600873, rel=1e-7)
    assert row["ci95"] == pytest.approx(0.6707942701, rel=1e-7)
    # The diverged run's group: its metrics are counted in n_runs but never averaged.
    bad = summary[summary["optim.lr"] == 1000]
    assert set(bad["metric"]) == {"final_train_loss", "time_s"}
    assert (bad["n"] == 0).all() and (bad["n_runs"] == 1).all() and bad["mean"].isna().all()


def test_an_unknown_artifact_is_a_clear_error(tmp_path, capsys):
    with pytest.raises(ValueError, match=r"No runs of nope under .*; found: mini_sweep \(run `make sweep-nope` first\)"):
        collect(RUNS, tmp_path, ["nope"], **MINI)
    assert collect_cli.main(["--runs", str(RUNS), "--results", str(tmp_path), "--artifact", "nope", "--any-artifact"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: No runs of nope under ") and "Traceback" not in err
    assert not any(tmp_path.iterdir())  # nothing written


def test_an_artifact_asked_for_by_name_is_tabulated_from_its_committed_records_alone(tmp_path):
    # A fresh checkout has the committed records and no run folders: collecting the artifact by
    # name rewrites its tables from them (as the code writes them now), the same numbers.
    collect(RUNS, tmp_path / "results", **MINI)
    before = pd.read_csv(tmp_path / "results" / "mini_sweep" / "runs.csv")
    (tmp_path / "empty").mkdir()
    collect(tmp_path / "empty", tmp_path / "results", ["mini_sweep"], **MINI)
    after = pd.read_csv(tmp_path / "results" / "mini_sweep" / "runs.csv")
    assert after["run"].tolist() == before["run"].tolist()
    assert after["final_val_loss"].tolist() == pytest.approx(before["final_val_loss"].tolist(), rel=1e-6, nan_ok=True)
    with pytest.raises(ValueError, match="No runs of mini_sweep"):  # --fresh: the records do not count
        collect(tmp_path / "empty", tmp_path / "other", ["mini_sweep"], fresh=True, **MINI)


def test_the_command_line_writes_the_same_tables(tmp_path, capsys):
    assert collect_cli.main(["--runs", str(RUNS), "--results", str(tmp_path), "--artifact", "mini_sweep",
                             "--scale", "smoke", "--any-artifact"]) == 0
    assert capsys.readouterr().out.startswith("mini_sweep: wrote ")
    assert _files(tmp_path) == _files(EXPECTED)


def test_a_run_that_failed_early_is_labelled_from_its_resolved_hydra_config(tmp_path):
    # Lookahead switched off names the run after its inner optimizer: `optim.name: ${optim.inner}`
    # in the unresolved config Hydra saves in .hydra/; the manifest holds only status and error.
    job = ["+experiment=table5_k_alpha", "scale=smoke", "la=disabled", "seed=0"]
    run = tmp_path / "runs" / "table5_k_alpha" / "la=disabled,scale=smoke,seed=0"
    (run / ".hydra").mkdir(parents=True)
    (run / ".hydra" / "config.yaml").write_text(OmegaConf.to_yaml(compose(job)))
    (run / ".hydra" / "overrides.yaml").write_text("".join(f"- {o}\n" for o in job))
    (run / "manifest.json").write_text(json.dumps({"status": "failed", "error": "Traceback ...\nOSError: disk full"}))
    collect(tmp_path / "runs", tmp_path / "results", scales=("smoke",))
    row = pd.read_csv(tmp_path / "results" / "table5_k_alpha" / "excluded.csv").iloc[0]
    assert (row["status"], row["optim"], row["la"], row["error"]) == ("failed", "sgd", "disabled", "OSError: disk full")
    assert "Not tabulated: 1 failed (excluded.csv)" in (tmp_path / "results" / "table5_k_alpha" / "table.md").read_text()


def test_collect_takes_declared_artifacts_at_the_asked_scale_only(tmp_path, capsys):
    # By default only conf/experiment/ artifacts are collected: scratch sweeps and `single` runs are not.
    assert collect(RUNS, tmp_path / "a") == {}
    assert "skip mini_sweep: not an artifact of conf/experiment/ (6 runs)" in capsys.readouterr().err
    assert not (tmp_path / "a").exists()
    # At another scale than its runs', nothing is tabulated and every member is counted.
    collect(RUNS, tmp_path / "b", scales=("cpu",), any_artifact=True)
    assert len(pd.read_csv(tmp_path / "b" / "mini_sweep" / "excluded.csv")) == 6
    assert "0 runs tabulated" in capsys.readouterr().err


def test_collect_reports_dirty_runs_and_keeps_their_diffs(tmp_path, capsys):
    import shutil

    runs = tmp_path / "runs"
    shutil.copytree(RUNS, runs)
    member = runs / "mini_sweep" / "experiment_name=mini_sweep,optim=sgd,scale=smoke,seed=0,task=nqm"
    (member / "git.diff").write_text("+changed\n")
    collect(runs, tmp_path / "out", **MINI)
    assert "5 of 5 runs from a dirty tree (1 with the diff stored)" in capsys.readouterr().err
    # A diff in git's format is summarised by the top-level paths it touches.
    (member / "git.diff").write_text("diff --git a/results/s/selected.yaml b/results/s/selected.yaml\n+x\n"
                                     "diff --git a/README.md b/README.md\n+y\n")
    collect(runs, tmp_path / "out2", **MINI)
    assert "(1 with the diff stored; the diffs touch README.md, results/ only)" in capsys.readouterr().err
    assert (tmp_path / "out" / "mini_sweep" / "manifests" / f"{member.name}.diff").read_text() == "+changed\n"



def test_the_wmt_table_reports_each_arm_with_its_seed_statistics():
    from scripts.collect_lib.paper import SPECS, build_table, render_markdown

    runs_df = pd.DataFrame([
        {"run": f"{arm},seed={s}", "status": status, "scale": "cpu", "dataset": "multi30k",
         "wmt_arm": arm, "final_test_bleu": bleu, "final_test_ppl": 12.0}
        for arm, s, bleu, status in [("adam_warmup", 0, 28.0, "completed"),
                                     ("adam_warmup", 1, 30.0, "completed"),
                                     ("lookahead_adam_warmup", 0, 29.0, "completed"),
                                     ("lookahead_adam_warmup", 1, float("nan"), "diverged")]])
    table = build_table(SPECS["fig7b_wmt"], "fig7b_wmt", runs_df, {}, None).set_index(["row", "column"])
    adam = table.loc[("Adam + warmup", "test BLEU")]
    assert (adam["mean"], adam["n"]) == (29.0, 2) and adam["std"] == pytest.approx(2 ** 0.5)
    assert adam["ci95"] == pytest.approx(12.7062047 * 1.0, rel=1e-6)  # t(0.975, 1) * sqrt(2) / sqrt(2)
    la = table.loc[("LA(Adam) + warmup", "test BLEU")]
    assert (la["mean"], la["n"], la["n_runs"]) == (29.0, 1, 2)
    assert la["not_completed"] == "lookahead_adam_warmup,seed=1"
    assert table.loc[("Adafactor + warmup", "test BLEU"), "n"] == 0
    text = render_markdown(SPECS["fig7b_wmt"], table.reset_index(), runs_df)
    assert "| Adam + warmup | 29.00 ± 1.41 (n=2), CI ±12.71 |" in text
    assert "`lookahead_adam_warmup,seed=1`: diverged" in text


def test_the_ptb_grid_table_puts_each_k_alpha_beside_the_inner_optimizer_alone():
    from scripts.collect_lib.paper import SPECS, build_table

    runs_df = pd.DataFrame([
        {"run": f"la={la},seed={s}", "status": "completed", "scale": "cpu", "dataset": "ptb",
         "optim": optim, "optim.lookahead.k": k, "optim.lookahead.alpha": a,
         "final_val_ppl": ppl + 4, "final_test_ppl": ppl}
        for la, optim, k, a, s, ppl in [("disabled", "sgd", None, None, 0, 114.0),
                                        ("k5_a0.5", "lookahead_sgd", 5, 0.5, 0, 112.0),
                                        ("k5_a0.5", "lookahead_sgd", 5, 0.5, 1, 116.0),
                                        ("k10_a0.8", "lookahead_sgd", 10, 0.8, 0, 115.0)]])
    table = build_table(SPECS["ptb_k_alpha"], "ptb_k_alpha", runs_df, {}, None).set_index(["row", "column"])
    assert table.loc[("SGD (Lookahead off)", "test"), "mean"] == 114.0
    cell = table.loc[("LA(SGD) k = 5, alpha = 0.5", "test")]
    assert (cell["mean"], cell["n"]) == (114.0, 2)  # 5 and 0.5, not 5 and 0.8
    assert table.loc[("LA(SGD) k = 10, alpha = 0.8", "validation"), "mean"] == 119.0
    assert table.loc[("LA(SGD) k = 5, alpha = 0.8", "test"), "n"] == 0
    assert table.loc[("Adam (Lookahead off)", "test"), "n_runs"] == 0


def test_a_paired_artifact_gets_per_seed_differences_with_intervals():
    from scripts.collect_lib.paired_artifact import Comparison, PairedSpec, paired_table, render

    spec = PairedSpec((Comparison("trainer.precision", "fp32", "bf16"),), ("final_test_acc",), "parity")
    runs = pd.DataFrame({"trainer.precision": ["fp32"] * 3 + ["bf16"] * 3, "seed": [0, 1, 2] * 2,
                         "final_test_acc": [0.80, 0.81, 0.79, 0.81, 0.83, 0.80]})
    row = paired_table(spec, runs).iloc[0]
    # d = (0.01, 0.02, 0.01): mean 0.01333, sd 0.005774, t_{0.975,2} = 4.302653 -> half-width 0.014342.
    assert row["n"] == 3 and row["mean_diff"] == pytest.approx(0.0133333, rel=1e-5)
    assert (row["t_low"], row["t_high"]) == pytest.approx((0.0133333 - 0.0143422, 0.0133333 + 0.0143422), rel=1e-4)
    assert not row["supported"]  # the t interval reaches below zero
    assert "| bf16 - fp32 | final_test_acc | 3 |" in render(spec, paired_table(spec, runs), "3 runs")


def test_paired_comparisons_use_only_the_seeds_both_arms_ran():
    from scripts.collect_lib.paired_artifact import Comparison, PairedSpec, paired_table

    spec = PairedSpec((Comparison("optim", "sgd", "lookahead_sgd"), Comparison("optim", "sgd", "adam")),
                      ("final_test_acc",), "two comparisons")
    runs = pd.DataFrame({"optim": ["sgd"] * 3 + ["lookahead_sgd"] * 2 + ["adam"],
                         "seed": [0, 1, 2, 0, 1, 0],
                         "final_test_acc": [0.80, 0.81, 0.79, 0.82, 0.84, 0.70]})
    table = paired_table(spec, runs).set_index("comparison")
    # Lookahead ran seeds 0 and 1: d = (0.02, 0.03); seed 2 of SGD has no partner.
    assert table.loc["lookahead_sgd - sgd", "n"] == 2
    assert table.loc["lookahead_sgd - sgd", "mean_diff"] == pytest.approx(0.025)
    # One pair: a difference, no interval, never "supported".
    row = table.loc["adam - sgd"]
    assert row["n"] == 1 and row["mean_diff"] == pytest.approx(-0.10)
    assert math.isnan(row["t_low"]) and not row["supported"]


def test_runs_csv_reports_evaluation_time_apart_from_training(tmp_path):
    # A run's manifest keeps evaluation's wall time (eval_time_s) apart from training's (time_s);
    # runs.csv shows both and evaluation's share of the two.
    import shutil

    shutil.copytree(RUNS, tmp_path / "runs")
    manifests = sorted((tmp_path / "runs").rglob("manifest.json"))
    for path in manifests:
        m = json.loads(path.read_text())
        if m.get("status") == "completed":
            m["eval_time_s"] = 0.25 * m["time_s"]
            path.write_text(json.dumps(m))
    collect(tmp_path / "runs", tmp_path / "results", **MINI)
    runs = pd.read_csv(tmp_path / "results" / "mini_sweep" / "runs.csv")
    done = runs[runs["status"] == "completed"]
    assert len(done) == 4 and (done["eval_s"] == 0.25 * done["time_s"]).all()
    assert done["eval_share"].tolist() == pytest.approx([0.2] * 4)  # 0.25 / (1 + 0.25)
    cols = list(runs.columns)
    assert cols.index("eval_s") == cols.index("time_s") + 1 and cols.index("eval_share") == cols.index("eval_s") + 1
