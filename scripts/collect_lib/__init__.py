"""Run directories -> tidy tables under ``results/<artifact>/`` (used by scripts/collect.py).

Per artifact (a run's ``config.experiment_name``): ``runs.csv``, ``curves.csv``,
``summary.csv``, ``manifests/<run id>.json`` (each run's manifest, copied byte for byte, so every
number traces to its config, commit, versions, device and seed) and, where the paper has a table
(``paper.SPECS``), ``table.csv`` and ``table.md``. Output is deterministic: rerunning on the same
runs rewrites identical bytes.
"""

from __future__ import annotations

import os
import sys
from collections import defaultdict
from pathlib import Path
from typing import Dict, Iterable, List, Optional

import pandas as pd

from .paper import SPECS, build_table, render_markdown
from .records import Run, find_runs
from .tidy import curves_table, runs_table, summary_table

FLOAT_FORMAT = "%.8g"

__all__ = ["collect", "collect_artifact", "group_by_artifact"]


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _csv(df: pd.DataFrame) -> str:
    return df.to_csv(index=False, float_format=FLOAT_FORMAT, lineterminator="\n")


def group_by_artifact(runs: Iterable[Run]) -> Dict[str, List[Run]]:
    """Runs by ``experiment_name``; runs without one are reported on stderr, not dropped silently."""
    out: Dict[str, List[Run]] = defaultdict(list)
    for run in runs:
        if run.artifact:
            out[run.artifact].append(run)
        else:
            print(f"warning: {run.path} has no experiment_name in its manifest or .hydra/config.yaml; "
                  "not collected", file=sys.stderr)
    for artifact, members in out.items():
        seen: Dict[str, Path] = {}
        for run in members:
            if run.run_id in seen:
                raise ValueError(f"Two runs of {artifact!r} share the id {run.run_id!r}: {seen[run.run_id]} "
                                 f"and {run.path}; keep one (or move one into another runs folder)")
            seen[run.run_id] = run.path
    return dict(sorted(out.items()))


def collect_artifact(artifact: str, runs: List[Run], out_dir: Path,
                     paper: Optional[pd.DataFrame] = None) -> List[Path]:
    """Write the tables of one artifact; returns the paths written."""
    runs = sorted(runs, key=lambda r: r.run_id)
    runs_df = runs_table(runs)
    files = {"runs.csv": _csv(runs_df), "curves.csv": _csv(curves_table(runs, runs_df)),
             "summary.csv": _csv(summary_table(runs_df))}
    if artifact in SPECS:
        table = build_table(SPECS[artifact], artifact, runs_df, {r.run_id: r for r in runs}, paper)
        files["table.csv"] = _csv(table)
        files["table.md"] = render_markdown(SPECS[artifact], table, runs_df)
    for run in runs:
        manifest = run.path / "manifest.json"
        files[f"manifests/{run.run_id}.json"] = manifest.read_text()
    paths = []
    for name, text in files.items():
        _write(out_dir / name, text)
        paths.append(out_dir / name)
    return paths


def collect(runs_dir: Path, results_dir: Path, artifacts: Optional[List[str]] = None,
            paper_path: Optional[Path] = None) -> Dict[str, List[Path]]:
    """Collect every artifact found under ``runs_dir`` (or only ``artifacts``)."""
    grouped = group_by_artifact(find_runs(runs_dir))
    missing = [a for a in artifacts or [] if a not in grouped]
    if missing:
        raise ValueError(f"No runs of {', '.join(missing)} under {runs_dir}; "
                         f"found: {', '.join(grouped) or 'none'} (run `make sweep-{missing[0]}` first)")
    paper = pd.read_csv(paper_path) if paper_path is not None and Path(paper_path).exists() else None
    return {a: collect_artifact(a, runs, Path(results_dir) / a, paper)
            for a, runs in grouped.items() if not artifacts or a in artifacts}
