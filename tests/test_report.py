"""results/README.md shows exactly the tables collect wrote (scripts/report.py)."""

from __future__ import annotations

from pathlib import Path

from scripts import report

ROOT = Path(__file__).resolve().parents[1]


def _results(tmp_path: Path) -> Path:
    (tmp_path / "table1_cifar").mkdir()
    (tmp_path / "table1_cifar" / "table.md").write_text("# Table 1\n\n## scale: cpu\n\n| | a |\n|---|---|\n")
    (tmp_path / "README.md").write_text(
        "# Results\n\n<!-- include: table1_cifar/table.md -->\nold numbers\n<!-- end include -->\n"
        "prose\n<!-- include: table3_ptb/table.md -->\n<!-- end include -->\n")
    return tmp_path


def test_blocks_are_replaced_by_the_tables_with_demoted_headings(tmp_path: Path) -> None:
    results = _results(tmp_path)
    assert report.main(["--results", str(results), "--check"]) == 1  # stale before
    assert report.main(["--results", str(results)]) == 0
    text = (results / "README.md").read_text()
    assert "old numbers" not in text and "### Table 1\n\n#### scale: cpu" in text
    assert text.startswith("# Results\n") and "prose\n" in text
    assert "`make sweep-table3_ptb SCALE=cpu && make collect`" in text  # missing table named
    assert report.main(["--results", str(results), "--check"]) == 0  # idempotent
    assert not list(results.glob("*.tmp"))


def test_the_committed_readme_shows_the_committed_tables() -> None:
    assert report.main(["--results", str(ROOT / "results"), "--check"]) == 0, \
        "results/README.md is stale: run `make figures`"
