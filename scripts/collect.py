"""Turn run directories into tidy tables: ``make collect``.

    python scripts/collect.py [--runs runs] [--results results] [--artifact NAME ...]

Reads every ``manifest.json`` (and its ``metrics.csv``) under ``--runs`` and writes, for each
declared artifact (an ``experiment_name`` of ``conf/experiment/*.yaml``; ``--any-artifact`` for
scratch sweeps), ``results/<artifact>/``, from its completed and diverged runs at ``--scale``:

- ``runs.csv``: one row per run: id (its directory name), status, seed, scale, task, dataset,
  optim, the grid keys, k/alpha/lr and other descriptors, final metrics, best, steps, time,
  commit and device;
- ``curves.csv``: long format (run, group columns, seed, step, epoch, metric, value), at most
  100 evenly spaced points per run and metric;
- ``manifests/<run id>.json``: each run's manifest, verbatim (and ``<run id>.diff``, the stored
  ``git.diff`` of a run made from a dirty tree);
- ``excluded.csv``: the members not tabulated (failed, unfinished, another scale), with status
  and error, so they are counted, never averaged;
- ``summary.csv``: per group (the grid without the seed) and metric: mean, std, n, Student-t
  95% CI half-width over completed seeds, and n_runs (all members);
- ``table.csv`` + ``table.md`` where the paper has a table: ours beside the paper's numbers
  (``results/paper_numbers.csv``), with the runs that did not complete listed.

An artifact's committed finished runs that have no run folder under ``--runs`` (a fresh
checkout that reran part of a sweep) are tabulated from their committed manifest and curves,
and table.md says how many; a local run of the same id replaces its record; ``--fresh`` tabulates
the local runs only (collect_lib/restore.py).

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
    parser.add_argument("--scale", default="cpu",
                        help="comma-separated scales to tabulate (default cpu; 'all' for every scale)")
    parser.add_argument("--any-artifact", action="store_true",
                        help="also collect names no conf/experiment/ file declares (scratch sweeps)")
    parser.add_argument("--fresh", action="store_true",
                        help="tabulate only the runs under --runs (drop committed runs without a run folder)")
    parser.add_argument("--paper", type=Path, default=None,
                        help=f"the paper's numbers (default: RESULTS/{PAPER_NUMBERS})")
    args = parser.parse_args(argv)
    if not args.runs.is_dir():
        print(f"error: no runs folder {args.runs}; run a sweep first (`make sweep-<artifact>`)", file=sys.stderr)
        return 2
    try:
        scales = None if args.scale == "all" else tuple(args.scale.split(","))
        written = collect(args.runs, args.results, args.artifact, args.paper or args.results / PAPER_NUMBERS,
                          scales=scales, any_artifact=args.any_artifact, fresh=args.fresh)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    for artifact, paths in written.items():
        print(f"{artifact}: wrote {', '.join(p.as_posix() for p in paths)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
