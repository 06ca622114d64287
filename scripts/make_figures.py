"""Build every paper figure and table whose results are present; never trains.

    python scripts/make_figures.py [--results results] [--out results/figures] [ARTIFACT ...]

Discovers each `scripts/figures/fig*.py` and `table*.py` module, and one figure per
fair-comparison study (`scripts/figures/study.py`). A module declares `ARTIFACT`
(its name), `SWEEP` (the command that produces its results), `REQUIRES` (result files relative
to the results folder) and the pure functions `load(results_dir) -> DataFrame`,
`summarize(df) -> DataFrame` and either `plot(summary) -> (fig, axes)` (written as
`<out>/<ARTIFACT>.png` and `.pdf`) or `render(summary) -> str` (written as `<out>/<ARTIFACT>.md`).
An artifact with a missing result file is skipped with one line naming the command to run.
Exit status 0 unless an artifact whose results exist fails to build.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import traceback
from pathlib import Path
from types import ModuleType

FIGURES = Path(__file__).resolve().parent / "figures"
# Drop the dates matplotlib would write, so rebuilding unchanged results gives identical files.
METADATA = {"png": {"Software": None}, "pdf": {"CreationDate": None, "Producer": None}}


def discover() -> tuple[list[ModuleType], list[str]]:
    """Import the figure and table modules in name order; returns (modules, failed names)."""
    package = f"{__package__}.figures" if __package__ else "figures"
    modules, failed = [], []
    for path in sorted(FIGURES.glob("*.py")):
        if not path.stem.startswith(("fig", "table")):
            continue
        try:
            modules.append(importlib.import_module(f"{package}.{path.stem}"))
        except Exception:  # a broken module is reported, the others still build
            traceback.print_exc()
            failed.append(path.stem)
    return modules, failed


def discover_studies() -> tuple[list, list[str]]:
    """One figure per fair-comparison study (`figures/study.py`, a study per conf/tune/ file)."""
    package = f"{__package__}.figures" if __package__ else "figures"
    try:
        return importlib.import_module(f"{package}.study").artifacts(), []
    except Exception:
        traceback.print_exc()
        return [], ["study"]


def _atomic(path: Path, write) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    write(tmp)
    os.replace(tmp, path)


def build(module: ModuleType, results: Path, out: Path) -> list[Path]:
    """load -> summarize -> plot/render one artifact and write its files; returns their paths."""
    summary = module.summarize(module.load(results))
    out.mkdir(parents=True, exist_ok=True)
    if hasattr(module, "render"):
        text = module.render(summary)
        path = out / f"{module.ARTIFACT}.md"
        _atomic(path, lambda p: p.write_text(text))
        return [path]
    fig, _ = module.plot(summary)
    paths = []
    for fmt, meta in METADATA.items():
        path = out / f"{module.ARTIFACT}.{fmt}"
        _atomic(path, lambda p: fig.savefig(p, format=fmt, metadata=meta))
        paths.append(path)
    return paths


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, default=Path("results"), help="results folder")
    parser.add_argument("--out", type=Path, default=None, help="output folder (RESULTS/figures)")
    parser.add_argument("artifacts", nargs="*", help="only these artifacts (default: all)")
    args = parser.parse_args(argv)
    out = args.out if args.out is not None else args.results / "figures"
    modules, failed = discover()
    studies, broken = discover_studies()
    modules, failed = modules + studies, failed + broken
    for module in modules:
        if args.artifacts and module.ARTIFACT not in args.artifacts:
            continue
        missing = [f for f in module.REQUIRES if not (args.results / f).exists()]
        if missing:
            print(f"skip {module.ARTIFACT}: missing {args.results.as_posix()}/{missing[0]}; "
                  f"run `{module.SWEEP}`")
            continue
        try:
            paths = build(module, args.results, out)
        except Exception:  # one broken figure must not stop the others
            traceback.print_exc()
            failed.append(module.ARTIFACT)
            continue
        print(f"wrote {', '.join(p.as_posix() for p in paths)}")
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
