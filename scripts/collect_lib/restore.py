"""Put a study's committed results back under the runs folder, so a fresh checkout goes on from them.

Run folders (``runs/``) are a local cache; what lasts is what ``analyze`` committed:
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
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import List

FINISHED = ("completed", "diverged")


def restore_study_runs(results_dir: Path, runs_dir: Path) -> List[Path]:
    """Write back the committed finished runs of one study; returns the run folders made.

    ``results_dir``: ``results/<study>`` (holding ``manifests/tune/``, ``manifests/final/``);
    ``runs_dir``: ``RUNS/<study>``.
    """
    made = []
    for phase in ("tune", "final"):
        committed = Path(results_dir) / "manifests" / phase
        if not committed.is_dir():
            continue
        for path in sorted(committed.glob("*.json")):
            run_dir = Path(runs_dir) / phase / path.stem
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
