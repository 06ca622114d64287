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
from typing import Dict, Iterable, List, Optional, Sequence

import pandas as pd

from .paired_artifact import PAIRED, paired_table
from .paired_artifact import render as render_paired
from .paper import SPECS, build_table, render_markdown
from .records import Run, find_runs
from .tidy import DIGITS, curves_table, runs_table, summary_table

FLOAT_FORMAT = f"%.{DIGITS}g"

__all__ = ["collect", "collect_artifact", "declared_artifacts", "group_by_artifact", "split_members"]


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


TABULATED = ("completed", "diverged")  # results; everything else is counted in excluded.csv
CONF_EXPERIMENTS = Path(__file__).resolve().parents[2] / "conf" / "experiment"


def declared_artifacts(conf_dir: Path = CONF_EXPERIMENTS) -> set:
    """The artifacts the suite declares: the ``experiment_name`` of every ``conf/experiment/*.yaml``."""
    import yaml

    names = set()
    for path in sorted(Path(conf_dir).glob("*.yaml")):
        node = yaml.safe_load(path.read_text()) or {}
        names.add(str(node.get("experiment_name") or path.stem))
    return names


def _scale(run: Run) -> str:
    return str(run.manifest.get("scale") or run.config.get("scale") or "unknown")


def split_members(runs: List[Run], scales: Optional[Sequence[str]]) -> tuple[List[Run], List[Run]]:
    """``(tabulated, excluded)``: results (completed or diverged) at the collected scales, and the rest."""
    keep = [r for r in runs if r.status in TABULATED and (scales is None or _scale(r) in scales)]
    ids = {id(r) for r in keep}
    return keep, [r for r in runs if id(r) not in ids]


def diff_tops(diff: str) -> List[str]:
    """The top-level folders (or files) a stored ``git diff`` touches, from its ``diff --git a/...`` lines."""
    tops = set()
    for line in diff.splitlines():
        if line.startswith("diff --git a/"):
            path = line.split()[2][len("a/"):]
            tops.add(path.split("/")[0] + "/" if "/" in path else path)
    return sorted(tops)


def provenance_line(runs: List[Run]) -> str:
    """How many runs came from a dirty tree (and for how many the diff is stored, and what the
    stored diffs touch: a study's final runs start after `select` wrote into results/, so their
    diff is results/ only, which no run reads as code), and how many were read from the committed
    record rather than a run folder."""
    dirty = [r for r in runs if (r.manifest.get("git") or {}).get("dirty")]
    stored = [r for r in dirty if r.diff_path.is_file()]
    recorded = sum(r.recorded for r in runs)
    tops = sorted({t for r in stored for t in diff_tops(r.diff_path.read_text())})
    touching = f"; the diffs touch {', '.join(tops)} only" if tops else ""
    line = (f"{len(dirty)} of {len(runs)} runs from a dirty tree ({len(stored)} with the diff stored{touching})" if dirty
            else f"{len(runs)} runs, all from a clean tree")
    return line + (f"; {recorded} read from the committed record (no run folder at collection)" if recorded else "")


def collect_artifact(artifact: str, runs: List[Run], out_dir: Path,
                     paper: Optional[pd.DataFrame] = None, excluded: Sequence[Run] = ()) -> List[Path]:
    """Write the tables of one artifact; returns the paths written.

    ``runs`` are tabulated; ``excluded`` (failed, unfinished or other-scale members) are listed in
    ``excluded.csv`` with their status and error, never averaged.
    """
    runs = sorted(runs, key=lambda r: r.run_id)
    runs_df = runs_table(runs)
    files = {"runs.csv": _csv(runs_df), "curves.csv": _csv(curves_table(runs, runs_df)),
             "summary.csv": _csv(summary_table(runs_df))}
    if excluded:
        files["excluded.csv"] = _csv(runs_table(sorted(excluded, key=lambda r: r.run_id)))
    if artifact in SPECS:
        table = build_table(SPECS[artifact], artifact, runs_df, {r.run_id: r for r in runs}, paper)
        files["table.csv"] = _csv(table)
        note = f"Provenance: {provenance_line(runs)}."
        if excluded:
            counts = ", ".join(f"{n} {s}" for s, n in sorted(_counts(excluded).items()))
            note += f" Not tabulated: {counts} (excluded.csv)."
        files["table.md"] = render_markdown(SPECS[artifact], table, runs_df) + note + "\n"
    if artifact in PAIRED:
        paired = paired_table(PAIRED[artifact], runs_df)
        files["paired.csv"] = _csv(paired)
        files["paired.md"] = render_paired(PAIRED[artifact], paired, provenance_line(runs))
    for run in runs:
        files[f"manifests/{run.run_id}.json"] = run.manifest_path.read_text()
        if run.diff_path.is_file():
            files[f"manifests/{run.run_id}.diff"] = run.diff_path.read_text()
    if not excluded:  # a member collected earlier as failed may have completed since
        (out_dir / "excluded.csv").unlink(missing_ok=True)
    # The record holds the tabulated runs and nothing else (a manifest left from an earlier
    # collection would no longer match the tables).
    for old in sorted((out_dir / "manifests").glob("*")) if (out_dir / "manifests").is_dir() else []:
        if old.is_file() and f"manifests/{old.name}" not in files:
            old.unlink()
    paths = []
    for name, text in files.items():
        _write(out_dir / name, text)
        paths.append(out_dir / name)
    return paths


def _counts(runs: Sequence[Run]) -> Dict[str, int]:
    out: Dict[str, int] = defaultdict(int)
    for r in runs:
        out[r.status if r.status not in TABULATED else f"{r.status} at scale {_scale(r)}"] += 1
    return dict(out)


def collect(runs_dir: Path, results_dir: Path, artifacts: Optional[List[str]] = None,
            paper_path: Optional[Path] = None, scales: Optional[Sequence[str]] = ("cpu",),
            declared: Optional[set] = None, any_artifact: bool = False,
            fresh: bool = False) -> Dict[str, List[Path]]:
    """Collect the declared artifacts found under ``runs_dir`` (or only ``artifacts``) at ``scales``.

    Runs of names no ``conf/experiment/`` file declares (``single``, scratch sweeps) are reported
    and left out unless ``any_artifact``; ``scales=None`` takes every scale. An artifact's
    committed finished runs that are not under ``runs_dir`` are tabulated with the local ones
    (``restore.recorded_runs``) unless ``fresh``.
    """
    # Fair-comparison studies (conf/tune/) have tables of their own (study_report.py); their
    # committed finished runs come back under runs_dir first, so a partial rerun keeps them.
    from .restore import recorded_runs, restore_study_runs
    from .study_report import collect_study
    from .study_spec import declared_studies

    for name in declared_studies():
        restore_study_runs(Path(results_dir) / name, Path(runs_dir) / name)
    grouped = group_by_artifact(find_runs(runs_dir))

    studies = {name: grouped.pop(name) for name in declared_studies() if name in grouped}
    if not any_artifact:
        known = declared if declared is not None else declared_artifacts()
        for name in [a for a in grouped if a not in known]:
            print(f"skip {name}: not an artifact of conf/experiment/ ({len(grouped[name])} runs)", file=sys.stderr)
            del grouped[name]
    if not fresh:
        # An artifact asked for by name whose runs are only committed (no run folder here) is
        # tabulated from its records alone: its tables are rewritten with what the code writes now.
        for name in artifacts or []:
            if name not in grouped and name not in studies and any((Path(results_dir) / name / "manifests").glob("*.json")):
                grouped[name] = []
    missing = [a for a in artifacts or [] if a not in grouped and a not in studies]
    if missing:
        raise ValueError(f"No runs of {', '.join(missing)} under {runs_dir}; "
                         f"found: {', '.join([*grouped, *studies]) or 'none'} (run `make sweep-{missing[0]}` first)")
    paper = pd.read_csv(paper_path) if paper_path is not None and Path(paper_path).exists() else None
    written = {}
    for artifact, members in grouped.items():
        if artifacts and artifact not in artifacts:
            continue
        if not fresh:
            # A finished local run with its metrics replaces its committed record; one still
            # running (or stopped) does not until it is a result, and a restored folder (the
            # committed manifest alone, `make sweep-<artifact> CONTINUE=1`) is its record.
            local = [r.run_id for r in members if r.status in TABULATED and r.metrics is not None]
            carried = recorded_runs(Path(results_dir) / artifact, local)
            replaced = {r.run_id for r in carried} & {r.run_id for r in members}
            again = sorted(r.run_id for r in members if r.run_id in replaced and r.status not in TABULATED)
            if carried:
                print(f"{artifact}: {len(carried)} committed runs read from {Path(results_dir) / artifact} "
                      f"(no finished run folder with metrics under {runs_dir}; --fresh leaves them out)",
                      file=sys.stderr)
            if again:
                print(f"{artifact}: {len(again)} of them are being run again here, not finished yet: "
                      f"{', '.join(again)}", file=sys.stderr)
            members = [r for r in members if r.run_id not in replaced] + carried
        keep, excluded = split_members(members, scales)
        written[artifact] = collect_artifact(artifact, keep, Path(results_dir) / artifact, paper, excluded)
        counts = ", ".join(f"{n} {s}" for s, n in sorted(_counts(excluded).items()))
        print(f"{artifact}: {len(keep)} runs tabulated{'; not tabulated: ' + counts if counts else ''}; "
              f"{provenance_line(keep)}", file=sys.stderr)
    for name, members in studies.items():
        if not artifacts or name in artifacts:
            written[name] = collect_study(name, members, results_dir, scales)
    return written
