"""Turn run directories into tidy tables: ``make collect``.

    python scripts/collect.py [--runs runs] [--results results] [--artifact NAME ...]

Reads every ``manifest.json`` (and its ``metrics.csv``) under ``--runs`` and writes, for each
artifact (the runs' ``experiment_name``), ``results/<artifact>/``:

- ``runs.csv``: one row per run: id (its directory name), status, seed, scale, task, dataset,
  optim, the grid keys, k/alpha/lr and other descriptors, final metrics, best, steps, time,
  commit and device;
- ``curves.csv``: long format (run, group columns, seed, step, epoch, metric, value), at most
  100 evenly spaced points per run and metric;
- ``manifests/<run id>.json``: each run's manifest, verbatim;
- ``summary.csv``: per group (the grid without the seed) and metric: mean, std, n, Student-t
  95% CI half-width over completed seeds, and n_runs (all members);
- ``table.csv`` + ``table.md`` where the paper has a table: ours beside the paper's numbers
  (``results/paper_numbers.csv``), with the runs that did not complete listed.

Only manifests say what a run is; directory names are never parsed. Rerunning rewrites
identical files.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

try:  # imported as scripts.collect
    from .collect_lib import collect
except ImportError:  # run as a script: scripts/ is on sys.path
    from collect_lib import collect

PAPER_NUMBERS = "paper_numbers.csv"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=Path, default=Path("runs"), help="folder of run directories")
    parser.add_argument("--results", type=Path, default=Path("results"), help="output folder")
    parser.add_argument("--artifact", action="append", default=None, help="only this artifact (repeatable)")
    parser.add_argument("--paper", type=Path, default=None,
                        help=f"the paper's numbers (default: RESULTS/{PAPER_NUMBERS})")
    args = parser.parse_args(argv)
    if not args.runs.is_dir():
        print(f"error: no runs folder {args.runs}; run a sweep first (`make sweep-<artifact>`)", file=sys.stderr)
        return 2
    try:
        written = collect(args.runs, args.results, args.artifact, args.paper or args.results / PAPER_NUMBERS)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    for artifact, paths in written.items():
        print(f"{artifact}: wrote {', '.join(p.as_posix() for p in paths)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
