"""Reader for line-aligned plain parallel text: ``<root>/<split>.<lang>``, one sentence per line.

This is the layout of Multi30k (``train.en`` / ``train.de``, ``val.*``, ``test_2016_flickr.*``)
and of the WMT test sets as plain text (``newstest2014.en`` / ``newstest2014.de``): UTF-8,
untokenised, line ``i`` of one side translating line ``i`` of the other. Only the trailing
newline is removed; everything else in a line (including inner whitespace) is kept, because
sentencepiece and sacrebleu both work on raw text.
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Tuple

from experiments.errors import DataError


def read_lines(path: Path) -> List[str]:
    """The lines of a UTF-8 text file without their line endings."""
    try:
        with open(path, encoding="utf-8", newline="\n") as f:
            return [line.rstrip("\r\n") for line in f]
    except UnicodeDecodeError as err:
        raise DataError(f"{path} is not UTF-8 text ({err}); parallel corpora must be UTF-8, one sentence per line.")


def read_parallel(root: str | Path, split: str, src_lang: str, tgt_lang: str,
                  how_to_get: str = "") -> Tuple[List[str], List[str]]:
    """Read ``<root>/<split>.<src_lang>`` and ``<root>/<split>.<tgt_lang>``.

    Returns:
        (source lines, target lines), of equal length.

    Raises:
        DataError: a file is missing (naming the path and ``how_to_get``) or the two sides have
            different line counts (naming both files and counts).
    """
    root = Path(root)
    paths = [root / f"{split}.{src_lang}", root / f"{split}.{tgt_lang}"]
    for path in paths:
        if not path.is_file():
            hint = f" {how_to_get}" if how_to_get else ""
            raise DataError(f"Missing parallel text {path} (looked for {split}.{src_lang} and "
                            f"{split}.{tgt_lang} in {root}).{hint}")
    src, tgt = (read_lines(p) for p in paths)
    if len(src) != len(tgt):
        raise DataError(f"Parallel text is not line-aligned: {paths[0]} has {len(src)} lines but "
                        f"{paths[1]} has {len(tgt)} lines; each line must translate the same line of the other side.")
    return src, tgt
