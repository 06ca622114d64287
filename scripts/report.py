"""Keep the tables shown in results/README.md identical to the tables `make collect` wrote.

    python scripts/report.py [--results results] [--check]      (part of `make figures`)

results/README.md holds the prose (what reproduces, what does not, and why); the numbers in
its tables are never typed: each block

    <!-- include: table1_cifar/table.md -->
    ...
    <!-- end include -->

is replaced by the named file (relative to the results directory) with its headings demoted two
levels, so that the README and the tables cannot disagree. A missing file becomes a line that
names the sweep producing it. `--check` rewrites nothing and exits 1 if the README is stale.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BLOCK = re.compile(r"(<!-- include: (?P<name>[^ ]+) -->\n)(?P<body>.*?)(<!-- end include -->)", re.S)


def _included(results: Path, name: str) -> str:
    path = results / name
    if not path.is_file():
        artifact = Path(name).parts[0]
        return f"*No results yet: `make sweep-{artifact} SCALE=cpu && make collect`.*\n"
    text = path.read_text()
    return re.sub(r"^(#+) ", lambda m: "#" * min(len(m.group(1)) + 2, 6) + " ", text, flags=re.M).rstrip() + "\n"


def render(readme: str, results: Path) -> str:
    """The README with every include block refreshed from `results`."""
    return BLOCK.sub(lambda m: m.group(1) + _included(results, m.group("name")) + m.group(4), readme)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--results", type=Path, default=ROOT / "results")
    parser.add_argument("--check", action="store_true", help="exit 1 if README.md is stale")
    args = parser.parse_args(argv)
    readme_path = args.results / "README.md"
    if not readme_path.is_file():
        print(f"error: {readme_path} does not exist", file=sys.stderr)
        return 2
    old = readme_path.read_text()
    new = render(old, args.results)
    if args.check:
        if new != old:
            print(f"{readme_path} is stale: run `python scripts/report.py`", file=sys.stderr)
            return 1
        return 0
    if new != old:
        tmp = readme_path.with_suffix(".md.tmp")
        tmp.write_text(new)
        tmp.replace(readme_path)  # atomic: never a half-written README
        print(f"wrote {readme_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
