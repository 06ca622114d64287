"""Fair-comparison studies (conf/tune/<study>.yaml): tune, select, final runs, analysis.

    python scripts/study.py tune    STUDY [--scale S] [--jobs J] [--threads T] [OVERRIDE ...]
    python scripts/study.py select  STUDY [--scale S]
    python scripts/study.py final   STUDY [--scale S] [--jobs J] [--threads T] [OVERRIDE ...]
    python scripts/study.py analyze STUDY [--scale S]
    python scripts/study.py points  STUDY [--scale S]           (print the members, run nothing)

(``make tune-STUDY``, ``select-STUDY``, ``final-STUDY``, ``analyze-STUDY``.) The protocol and its
math are in ``scripts/collect_lib/study_spec.py`` (design), ``selection.py``, ``expected_max.py``,
``paired.py`` and ``study_report.py``.

- ``tune`` runs every arm's ``budget`` trials as named members of one ``run.py -m`` sweep
  (``hydra.sweeper.members``), under ``RUNS/<study>/tune/arm=<arm>,trial=<i>,seed=<s>,scale=<scale>``;
  relaunching runs only the trials that are not results yet.
- ``select`` writes ``RESULTS/<study>/selected.yaml`` (per arm: values, validation score, trial id,
  budget) from the validation scores of a complete budget, and ``trials.csv``.
- ``final`` runs each arm at its selected values on the final seeds, under
  ``RUNS/<study>/final/arm=<arm>,seed=<s>,scale=<scale>``; it refuses when selected.yaml was made
  from another design than the study file's.
- ``analyze`` writes trials.csv, expected_max.csv, final.csv, paired.csv and table.md
  (``make collect`` does the same for every study with runs).

Every command but ``points`` first writes the study's committed finished runs
(``RESULTS/<study>/manifests/``) back under RUNS where their folders are missing
(``collect_lib/restore.py``): a fresh checkout skips the trials already done and its tables keep
them.

A study that names others in ``reuse:`` takes, before ``tune`` and ``final`` launch, the members
they have finished with the same config and data fingerprints (``collect_lib/reuse.py``): the
arms two studies share train once.

Every member gets ``trainer.threads=T`` (default: 1 with ``--jobs`` > 1, else every core) and
``trainer.progress=false``, so all members of a launch share the thread count; OVERRIDEs (e.g.
``data.root=DIR``, ``hydra/launcher=slurm``) are passed to every member. RUNS is $LOOKAHEAD_RUNS
or ``runs``. Exit 2 with one line for a study that cannot be used as it is.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path
from typing import List, Optional

import yaml

ROOT = Path(__file__).resolve().parents[1]

try:  # imported as scripts.study
    from .collect_lib import _csv, _write
    from .collect_lib.records import find_runs
    from .collect_lib.restore import restore_study_runs
    from .collect_lib.reuse import reuse_runs
    from .collect_lib.selection import select, selected_document, study_runs, trials_table
    from .collect_lib.study_report import analyze, read_selected
    from .collect_lib.study_spec import Study, StudyError, load_study, members_override
except ImportError:  # run as a script: scripts/ is on sys.path
    from collect_lib import _csv, _write
    from collect_lib.records import find_runs
    from collect_lib.restore import restore_study_runs
    from collect_lib.reuse import reuse_runs
    from collect_lib.selection import select, selected_document, study_runs, trials_table
    from collect_lib.study_report import analyze, read_selected
    from collect_lib.study_spec import Study, StudyError, load_study, members_override


def runs_root(args: argparse.Namespace) -> Path:
    return Path(args.runs or os.environ.get("LOOKAHEAD_RUNS") or "runs")


def restore(study: Study, args: argparse.Namespace) -> None:
    """Write the study's committed finished runs back under RUNS (collect_lib/restore.py)."""
    results = study.results_dir(args.results, args.scale)
    made = restore_study_runs(results, runs_root(args) / study.name)
    if made:
        print(f"{study.name}: {len(made)} finished runs restored from {results / 'manifests'} into "
              f"{runs_root(args) / study.name} (they are skipped, and read with the local runs)", flush=True)


def launch(study: Study, phase: str, members, args: argparse.Namespace) -> int:
    """Run ``members`` as one ``run.py -m`` sweep under ``RUNS/<study>/<phase>``, after taking the
    members the studies of ``reuse:`` have finished with the same config and data."""
    jobs = max(int(args.jobs), 1)
    threads = args.threads if args.threads is not None else (1 if jobs > 1 else (os.cpu_count() or 1))
    launcher = ["hydra/launcher=joblib", f"hydra.launcher.n_jobs={jobs}"] if jobs > 1 else []
    sweep_dir = (runs_root(args) / study.name / phase).resolve()
    job_args = [*study.common_args(args.scale), f"trainer.threads={threads}", "trainer.progress=false",
                *args.overrides]
    reuse(study, phase, members, job_args, args)
    cmd = [sys.executable, str(ROOT / "run.py"), "-m", *job_args, f"hydra.sweep.dir={sweep_dir}", *launcher,
           members_override(members)]
    print(f"{phase} {study.name}: {len(members)} members under {sweep_dir}", flush=True)
    return subprocess.call(cmd, cwd=os.getcwd())


def reuse(study: Study, phase: str, members, job_args: List[str], args: argparse.Namespace) -> None:
    """Copy in the members another study has finished with the same config and data (collect_lib/reuse.py)."""
    if not study.reuse:
        return
    own = [a for a in job_args if not a.split("=", 1)[0].lstrip("+~").startswith("hydra")]
    done = reuse_runs(study, phase, members, own, args.scale or study.scale, runs_root(args), args.results)
    for source in sorted(set(done.taken.values())):
        names = [m for m, s in done.taken.items() if s == source]
        print(f"{study.name}/{phase}: {len(names)} members taken from {source}'s finished runs (same config and "
              f"data): {', '.join(names)}", flush=True)
    for member, why in done.differ.items():
        print(f"{study.name}/{phase}: {member} not taken from {why} differs; it runs here", flush=True)


def cmd_points(study: Study, args: argparse.Namespace) -> int:
    print(" ".join(study.common_args(args.scale)))
    for m in study.tune_members(args.scale):
        print(f"{m.name}: {' '.join(m.overrides)}")
    return 0


def cmd_tune(study: Study, args: argparse.Namespace) -> int:
    return launch(study, "tune", study.tune_members(args.scale), args)


def cmd_select(study: Study, args: argparse.Namespace) -> int:
    scale = args.scale or study.scale
    tune, _ = study_runs(find_runs(runs_root(args) / study.name), study, scale)
    trials = trials_table(study, tune, scale)
    selection = select(study, trials)
    out = study.results_dir(args.results, scale)
    out.mkdir(parents=True, exist_ok=True)
    header = (f"# Written by `python scripts/study.py select {study.name}` from the validation scores "
              f"({study.metric}, {study.mode}) of {study.budget} trials per arm; test was not read.\n")
    text = header + yaml.safe_dump(selected_document(study, scale, selection), sort_keys=False)
    tmp = out / ".selected.yaml.tmp"
    tmp.write_text(text)
    tmp.replace(out / "selected.yaml")
    _write(out / "trials.csv", _csv(trials))
    for arm, s in selection.items():
        values = ", ".join(f"{k}={v}" for k, v in s["values"].items())
        print(f"{arm}: trial {s['trial']} ({study.metric} {s['score']:.6g}; {s['diverged']} of {s['trials']} "
              f"diverged): {values}")
    print(f"wrote {out / 'selected.yaml'}")
    return 0


def cmd_final(study: Study, args: argparse.Namespace) -> int:
    scale = args.scale or study.scale
    path = study.results_dir(args.results, scale) / "selected.yaml"
    selected = read_selected(path)
    if selected is None:
        raise StudyError(f"no {path}: run `make select-{study.name}` first")
    if selected.get("design_sha256") != study.design_sha256(scale):
        raise StudyError(f"{path} was selected from another design than {study.path.name} holds now (budget, "
                         f"spaces, seeds or overrides changed): rerun `make tune-{study.name} select-{study.name}`")
    values = {arm: s["values"] for arm, s in selected["arms"].items()}
    return launch(study, "final", study.final_members(values, scale), args)


def cmd_analyze(study: Study, args: argparse.Namespace) -> int:
    paths = analyze(study, find_runs(runs_root(args) / study.name), args.results, args.scale)
    print(f"{study.name}: wrote {', '.join(p.as_posix() for p in paths if 'manifests' not in p.parts)}"
          f" and {sum('manifests' in p.parts for p in paths)} manifests")
    return 0


COMMANDS = {"tune": cmd_tune, "select": cmd_select, "final": cmd_final, "analyze": cmd_analyze, "points": cmd_points}


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=sorted(COMMANDS))
    parser.add_argument("study", help="a conf/tune/ name (or a path to a study file)")
    parser.add_argument("--scale", default=None, help="run the study at another scale than its file's")
    parser.add_argument("--jobs", default=1, help="members side by side (joblib), each with --threads threads")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--runs", type=Path, default=None, help="runs folder (default $LOOKAHEAD_RUNS or runs)")
    parser.add_argument("--results", type=Path, default=ROOT / "results", help="results folder")
    parser.add_argument("overrides", nargs="*", help="overrides for every member (tune, final)")
    args = parser.parse_args(argv)
    try:
        study = load_study(args.study)
        if args.overrides and args.command not in ("tune", "final"):
            raise StudyError(f"{args.command} takes no overrides (got {' '.join(args.overrides)})")
        if args.command != "points":
            restore(study, args)
        return COMMANDS[args.command](study, args)
    except StudyError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
