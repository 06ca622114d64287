"""Prepare WMT14 English-German for ``task=wmt14`` from the raw parallel training text.

    python scripts/data/prepare_wmt14.py RAW_DIR OUT_DIR [--vocab-size 32000] [--test-dir DIR]

Input (``RAW_DIR``): the WMT14 en-de training corpora as line-aligned plain text, one pair of
files per corpus named ``<corpus>.en`` and ``<corpus>.de``. From the official archives
(statmt.org/wmt14/translation-task.html) these are

    europarl-v7.de-en.en / .de           training-parallel-europarl-v7.tgz, training/
    commoncrawl.de-en.en / .de           training-parallel-commoncrawl.tgz
    news-commentary-v9.de-en.en / .de    training-parallel-nc-v9.tgz, training/

(about 4.5M pairs in all). Every ``*.en`` with a matching ``*.de`` in ``RAW_DIR`` is used, or
only the corpora named with ``--corpora``. The test set newstest2014 (the full 3003-line
version) must lie as plain text ``newstest2014.en`` / ``newstest2014.de`` in ``--test-dir``
(default ``RAW_DIR``), for example from ``sacrebleu -t wmt14 -l en-de --echo src`` and
``--echo ref``; ``newstest2013.en`` / ``.de`` there are copied too when present (validation).

Output (``OUT_DIR``, then ``data.root`` of the task, e.g. ``$LOOKAHEAD_DATA/wmt14``):

    spm.model, spm.vocab     joint sentencepiece BPE trained on both sides of the training text
    train.en-de.pt           the encoded training pairs: {"src", "tgt"} as flat int32 ids with
                             offsets (experiments.data.spm.Encoded), "spm_sha256", "corpora"
    newstest2014.en / .de    the test set (sources and BLEU references), copied unchanged
    newstest2013.en / .de    if present

The BPE model is trained on a seeded random sample of ``--spm-sentences`` lines (all lines
when the corpus is smaller), so re-running gives the same files.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path
from typing import List, Optional

import torch

from experiments.data.parallel import read_parallel
from experiments.data.spm import encode, load_model, sha256, train_spm
from experiments.errors import DataError

SRC, TGT = "en", "de"


def find_corpora(raw: Path, names: Optional[List[str]]) -> List[str]:
    found = sorted(p.name[: -len(SRC) - 1] for p in raw.glob(f"*.{SRC}") if (raw / f"{p.stem}.{TGT}").is_file())
    found = [c for c in found if not c.startswith("newstest")]
    if names:
        missing = [c for c in names if c not in found]
        if missing:
            raise DataError(f"Corpora {missing} not found in {raw} (need <corpus>.{SRC} and <corpus>.{TGT}); found {found}")
        return list(names)
    if not found:
        raise DataError(f"No training corpora in {raw}: expected pairs of files <corpus>.{SRC} / <corpus>.{TGT} "
                        "(e.g. europarl-v7.de-en.en / europarl-v7.de-en.de); see this script's docstring.")
    return found


def prepare(raw: Path, out: Path, vocab_size: int, test_dir: Path, corpora: Optional[List[str]] = None,
            spm_sentences: int = 10_000_000, threads: int = 1) -> dict:
    """Write the files listed in the module docstring into ``out``; returns a summary."""
    names = find_corpora(raw, corpora)
    src: List[str] = []
    tgt: List[str] = []
    for name in names:
        s, t = read_parallel(raw, name, SRC, TGT)
        src += s
        tgt += t
    test = read_parallel(test_dir, "newstest2014", SRC, TGT, "Give --test-dir with newstest2014.en/.de as plain text.")
    out.mkdir(parents=True, exist_ok=True)
    proto = train_spm(src + tgt, vocab_size, character_coverage=0.9999, max_sentences=spm_sentences, threads=threads)
    (out / "spm.model").write_bytes(proto)
    sp = load_model(proto)
    (out / "spm.vocab").write_text("".join(f"{sp.id_to_piece(i)}\t{sp.get_score(i)}\n" for i in range(len(sp))),
                                   encoding="utf-8")
    blob = {"src": encode(sp, src).to_dict(), "tgt": encode(sp, tgt).to_dict(), "spm_sha256": sha256(proto),
            "corpora": names}
    torch.save(blob, out / f"train.{SRC}-{TGT}.pt")
    copied = []
    for split in ("newstest2014", "newstest2013"):
        for lang in (SRC, TGT):
            if (test_dir / f"{split}.{lang}").is_file() and test_dir.resolve() != out.resolve():
                shutil.copyfile(test_dir / f"{split}.{lang}", out / f"{split}.{lang}")
                copied.append(f"{split}.{lang}")
    return {"corpora": names, "pairs": len(src), "vocab_size": len(sp), "test_lines": len(test[0]), "copied": copied}


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("raw_dir", type=Path, help="folder with <corpus>.en / <corpus>.de training text")
    parser.add_argument("out_dir", type=Path, help="output folder (the task's data.root)")
    parser.add_argument("--vocab-size", type=int, default=32000, help="BPE pieces (default 32000)")
    parser.add_argument("--test-dir", type=Path, default=None, help="folder with newstest2014.en/.de (default raw_dir)")
    parser.add_argument("--corpora", nargs="*", default=None, help="corpus names to use (default: all pairs found)")
    parser.add_argument("--spm-sentences", type=int, default=10_000_000, help="lines sampled to train BPE")
    parser.add_argument("--threads", type=int, default=1, help="sentencepiece trainer threads")
    args = parser.parse_args(argv)
    try:
        summary = prepare(args.raw_dir, args.out_dir, args.vocab_size, args.test_dir or args.raw_dir, args.corpora,
                          args.spm_sentences, args.threads)
    except (DataError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"wrote {args.out_dir}: {summary}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
