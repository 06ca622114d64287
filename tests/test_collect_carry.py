"""`make collect` after rerunning part of a sweep keeps the committed runs it did not rerun.

A fresh checkout has no run folders; the record of a paper artifact is ``results/<artifact>/``
(manifests and curves). Pinned on the committed miniature sweep (tests/data/mini_sweep): with
two finished members' run folders gone, collecting into the committed record rewrites it byte
for byte and says so; ``fresh`` drops them (their manifests too); a finished local run replaces
the record of the same id, one started again does not until it finishes; a continued sweep's
restored manifests are read from the record; a record without its config is a one-line error.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from scripts import collect as collect_cli
from scripts.collect_lib import collect
from scripts.collect_lib.restore import main as restore_main
from scripts.collect_lib.restore import recorded_runs

DATA = Path(__file__).resolve().parent / "data" / "mini_sweep"
MINI = {"scales": ("smoke",), "any_artifact": True}
GONE = ("experiment_name=mini_sweep,optim=sgd,scale=smoke,seed=1,task=nqm",
        "experiment_name=mini_sweep,optim=lookahead_sgd,scale=smoke,seed=0,task=nqm")


def _files(root: Path) -> dict:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture
def partial(tmp_path):
    """(runs without the GONE members, the record collected from all runs)."""
    runs = tmp_path / "runs"
    shutil.copytree(DATA / "runs", runs)
    results = tmp_path / "results"
    collect(runs, results, **MINI)
    for name in GONE:
        assert (runs / "mini_sweep" / name / "manifest.json").is_file()
        shutil.rmtree(runs / "mini_sweep" / name)
    return runs, results


def test_collecting_a_partial_rerun_rewrites_the_committed_record_unchanged(partial, capsys):
    runs, results = partial
    before = _files(results)
    capsys.readouterr()
    collect(runs, results, **MINI)
    assert _files(results) == before
    err = capsys.readouterr().err
    assert f"mini_sweep: 2 committed runs read from {results / 'mini_sweep'}" in err
    assert "2 read from the committed record" in err


def test_the_carried_runs_hold_the_committed_curves(partial):
    runs, results = partial
    carried = recorded_runs(results / "mini_sweep", [p.name for p in (runs / "mini_sweep").iterdir()])
    assert [r.run_id for r in carried] == sorted(GONE)
    assert all(r.recorded and r.status == "completed" for r in carried)
    curves = pd.read_csv(results / "mini_sweep" / "curves.csv")
    for run in carried:
        mine = curves[curves["run"] == run.run_id]
        assert set(run.metrics.columns) == {"step", "epoch", *mine["metric"]}
        assert run.metrics[[c for c in run.metrics if c not in ("step", "epoch")]].notna().sum().sum() == len(mine)


def test_fresh_tabulates_the_local_runs_only_and_drops_their_manifests(partial):
    runs, results = partial
    assert collect_cli.main(["--runs", str(runs), "--results", str(results), "--scale", "smoke",
                             "--any-artifact", "--fresh"]) == 0
    tabulated = set(pd.read_csv(results / "mini_sweep" / "runs.csv")["run"])
    assert not tabulated & set(GONE) and len(tabulated) == 3
    assert sorted(p.stem for p in (results / "mini_sweep" / "manifests").glob("*.json")) == sorted(tabulated)
    assert not set(GONE) & set(pd.read_csv(results / "mini_sweep" / "curves.csv")["run"])


def test_a_local_run_replaces_the_committed_record_of_its_id(partial):
    runs, results = partial
    # The record of a member still under runs/ says something else: the run folder wins.
    local = "experiment_name=mini_sweep,optim=sgd,scale=smoke,seed=0,task=nqm"
    record = results / "mini_sweep" / "manifests" / f"{local}.json"
    stale = json.loads(record.read_text())
    stale["final"] = {k: 123.0 for k in stale["final"]}
    record.write_text(json.dumps(stale))
    collect(runs, results, **MINI)
    assert record.read_text() == (runs / "mini_sweep" / local / "manifest.json").read_text()
    row = pd.read_csv(results / "mini_sweep" / "runs.csv").set_index("run").loc[local]
    assert all(row[f"final_{k}"] != 123.0 for k in stale["final"])


def test_a_run_started_again_does_not_replace_its_record_until_it_finishes(partial, capsys):
    runs, results = partial
    before = _files(results)
    again = runs / "mini_sweep" / GONE[0]
    again.mkdir()
    manifest = json.loads((DATA / "runs" / "mini_sweep" / GONE[0] / "manifest.json").read_text())
    manifest.update(status="running", final={})
    (again / "manifest.json").write_text(json.dumps(manifest))
    capsys.readouterr()
    collect(runs, results, **MINI)
    assert _files(results) == before  # the committed run is still the one tabulated
    assert f"mini_sweep: 1 of them are being run again here, not finished yet: {GONE[0]}" in capsys.readouterr().err


def test_a_continued_sweep_gets_the_committed_manifests_back_and_collect_reads_their_record(partial, capsys):
    # `make sweep-<artifact> CONTINUE=1` on a fresh checkout: the committed finished members come
    # back as manifest-only folders (the sweep skips them); their tables come from the record.
    runs, results = partial
    before = _files(results)
    assert restore_main(["mini_sweep", "--runs", str(runs), "--results", str(results)]) == 0
    assert capsys.readouterr().out == f"mini_sweep: 2 committed finished runs restored into {runs / 'mini_sweep'}\n"
    for name in GONE:
        assert sorted(p.name for p in (runs / "mini_sweep" / name).iterdir()) == ["manifest.json"]
        assert (runs / "mini_sweep" / name / "manifest.json").read_bytes() == \
            (results / "mini_sweep" / "manifests" / f"{name}.json").read_bytes()
    collect(runs, results, **MINI)
    assert _files(results) == before


def test_a_record_without_its_config_is_a_clear_error(partial, capsys):
    runs, results = partial
    record = results / "mini_sweep" / "manifests" / f"{GONE[0]}.json"
    manifest = json.loads(record.read_text())
    del manifest["config"]
    record.write_text(json.dumps(manifest))
    assert collect_cli.main(["--runs", str(runs), "--results", str(results), "--scale", "smoke",
                             "--any-artifact"]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith(f"error: {record} has no config") and "--fresh" in err
