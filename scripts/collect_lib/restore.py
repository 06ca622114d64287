"""Committed results back into collection, so a fresh checkout goes on from them.

Run folders (``runs/``) are a local cache; what lasts is what is committed under ``results/``.

Studies (conf/tune/): what ``analyze`` committed,
``results/<study>/manifests/<phase>/<run id>.json`` (and ``<run id>.diff``) for every tuning
trial and final run. Before a study command reads or launches runs, each committed manifest of
a finished run (``completed`` or ``diverged``) whose run folder is missing is written back as
``RUNS/<study>/<phase>/<run id>/manifest.json`` (the diff as ``git.diff``), byte for byte. Then:

- ``tune`` and ``final`` skip those members, as for any finished run: the sweep checks the
  manifest's config hash and data fingerprint against the new command's, so a changed study or
  data stops with one line instead of mixing;
- ``select`` and ``analyze`` read them with the local runs, so tables written on a machine that
  ran only some of the trials still hold all of them.

A run folder that exists is never touched (its own manifest wins), and unfinished runs are not
restored (a checkpoint does not survive; they run again).

Paper artifacts (conf/experiment/): ``collect`` commits each finished run's manifest and at most
``tidy.MAX_POINTS`` points per metric of its curves, not its metrics.csv. ``recorded_runs`` reads
the committed members that have no finished run folder with its metrics as runs of their own
(``Run.recorded``): the manifest from ``manifests/<run id>.json``, the metrics from its rows of
``curves.csv``. Those rows are every point collect keeps, so the tables written from them are
the committed ones: collecting after rerunning part of a sweep keeps the rest, and a finished
local run of the same id replaces its committed record (an unfinished one does not yet).
``collect --fresh`` leaves them out. A sweep reruns committed members by default (a fresh
checkout reproduces them); ``make sweep-<artifact> CONTINUE=1`` first writes their manifests
back (``restore_artifact_runs``), so it runs only what is missing.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Iterable, List, Optional

import pandas as pd

from .records import Run

FINISHED = ("completed", "diverged")


def restore_study_runs(results_dir: Path, runs_dir: Path) -> List[Path]:
    """Write back the committed finished runs of one study; returns the run folders made.

    ``results_dir``: ``results/<study>`` (holding ``manifests/tune/``, ``manifests/final/``);
    ``runs_dir``: ``RUNS/<study>``.
    """
    return [p for phase in ("tune", "final")
            for p in _restore(Path(results_dir) / "manifests" / phase, Path(runs_dir) / phase)]


def restore_artifact_runs(results_dir: Path, runs_dir: Path) -> List[Path]:
    """The same for a paper artifact (``results/<artifact>/manifests/`` -> ``RUNS/<artifact>/``), so
    that a sweep continued on a fresh checkout skips the members already committed
    (``make sweep-<artifact> CONTINUE=1``). Such a folder holds the manifest only; collect reads
    the run from its committed record (``recorded_runs``)."""
    return _restore(Path(results_dir) / "manifests", Path(runs_dir))


def _restore(committed: Path, runs_dir: Path) -> List[Path]:
    made = []
    if not committed.is_dir():
        return made
    for path in sorted(committed.glob("*.json")):
        run_dir = runs_dir / path.stem
        if run_dir.exists():
            continue
        text = path.read_text()
        if json.loads(text).get("status") not in FINISHED:
            continue
        # Built aside and renamed into place: a run folder is either whole or absent.
        tmp = run_dir.with_name(run_dir.name + ".restoring")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        (tmp / "manifest.json").write_text(text)
        diff = path.with_suffix(".diff")
        if diff.is_file():
            (tmp / "git.diff").write_text(diff.read_text())
        tmp.rename(run_dir)
        made.append(run_dir)
    return made


def recorded_runs(results_dir: Path, local_ids: Iterable[str]) -> List[Run]:
    """The committed finished runs of one artifact (``results/<artifact>``) whose id is not in
    ``local_ids``, read back as ``Run(recorded=True)`` in id order."""
    committed = Path(results_dir) / "manifests"
    local = set(local_ids)
    paths = [p for p in sorted(committed.glob("*.json")) if p.stem not in local] if committed.is_dir() else []
    if not paths:
        return []
    curves_path = Path(results_dir) / "curves.csv"
    curves = pd.read_csv(curves_path) if curves_path.is_file() else None
    by_run = {run: rows for run, rows in curves.groupby("run", sort=False)} if curves is not None else {}
    out = []
    for path in paths:
        manifest = json.loads(path.read_text())
        if manifest.get("status") not in FINISHED:
            continue
        if not isinstance(manifest.get("config"), dict):
            raise ValueError(f"{path} has no config (made by an older version), so it cannot be tabulated; "
                             "rerun it, or collect with --fresh to leave the committed runs out")
        out.append(Run(committed / path.stem, manifest, manifest["config"], list(manifest.get("overrides") or []),
                       _wide(by_run.get(path.stem)), recorded=True))
    return out


def _wide(rows: Optional[pd.DataFrame]) -> Optional[pd.DataFrame]:
    """curves.csv's long rows of one run as a metrics.csv-shaped frame (step, epoch, one column per
    metric); a value logged twice at one (step, epoch) keeps both rows."""
    if rows is None or not len(rows):
        return None
    long = rows[["step", "epoch", "metric", "value"]]
    long = long.assign(_n=long.groupby(["step", "epoch", "metric"]).cumcount())
    wide = long.set_index(["step", "epoch", "_n", "metric"])["value"].unstack("metric")
    wide.columns.name = None
    return wide.reset_index().drop(columns="_n")


def main(argv: Optional[List[str]] = None) -> int:
    """``python -m scripts.collect_lib.restore ARTIFACT``: restore_artifact_runs for one artifact."""
    import argparse
    import os

    parser = argparse.ArgumentParser(description="Write a paper artifact's committed finished runs back "
                                                 "under the runs folder, so its sweep skips them")
    parser.add_argument("artifact")
    parser.add_argument("--runs", type=Path, default=Path(os.environ.get("LOOKAHEAD_RUNS") or "runs"))
    parser.add_argument("--results", type=Path, default=Path("results"))
    args = parser.parse_args(argv)
    made = restore_artifact_runs(args.results / args.artifact, args.runs / args.artifact)
    print(f"{args.artifact}: {len(made)} committed finished runs restored into {args.runs / args.artifact}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
