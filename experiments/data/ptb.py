"""Reader for Mikolov's Penn Treebank text, batching into streams, and BPTT segments.

Layout (Mikolov et al. 2010, the ``simple-examples/data`` folder): ``ptb.train.txt``,
``ptb.valid.txt``, ``ptb.test.txt``; one sentence per line, words separated by spaces, rare
words already replaced by ``<unk>``, numbers by ``N``. Each line becomes its words followed by
``<eos>``; the vocabulary is the training words in order of first appearance (10,000 words
with ``<unk>`` and ``<eos>``). PTB is closed-vocabulary, so a validation or test word missing
from the training vocabulary means the files do not belong together and is an error.

A split of T tokens is cut into ``batch`` contiguous streams of floor(T / batch) tokens (the
rest is dropped), a (batch, T') tensor; a segment (i, L) feeds columns i..i+L-1 and predicts
columns i+1..i+L, and consecutive segments continue the same streams, so the hidden state is
carried from one to the next (truncated BPTT).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Tuple

import torch

from experiments.errors import DataError

SPLITS = ("train", "valid", "test")
EOS = "<eos>"
HOW_TO_GET = ("Set data.root (or LOOKAHEAD_DATA, which holds ptb/) to the folder with ptb.train.txt, "
              "ptb.valid.txt and ptb.test.txt: the data/ folder of Mikolov's simple-examples archive "
              "(http://www.fit.vutbr.cz/~imikolov/rnnlm/simple-examples.tgz).")


@dataclass
class Corpus:
    """The vocabulary (index -> word) and each split as a 1-D int64 stream of word indices."""

    words: List[str]
    train: torch.Tensor
    valid: torch.Tensor
    test: torch.Tensor


def _read_words(path: Path) -> List[str]:
    """The file's words, ``<eos>`` after each line."""
    if not path.is_file():
        raise DataError(f"Penn Treebank not found: looked for {path}. {HOW_TO_GET}")
    try:
        text = path.read_bytes().decode("utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise DataError(f"{path} is not a readable PTB text file ({type(err).__name__}: {err}). {HOW_TO_GET}") from err
    if "\x00" in text:
        raise DataError(f"{path} holds NUL bytes, so it is not PTB text (an archive?). {HOW_TO_GET}")
    words: List[str] = []
    for line in text.splitlines():
        words += line.split()
        words.append(EOS)
    if words.count(EOS) == len(words):
        raise DataError(f"{path} holds no words; expected one sentence per line. {HOW_TO_GET}")
    return words


def load_ptb(root: str | Path) -> Corpus:
    """Read the three splits under ``root``; raises :class:`DataError` if one is missing or bad."""
    root = Path(root)
    words = {split: _read_words(root / f"ptb.{split}.txt") for split in SPLITS}
    index: Dict[str, int] = {word: i for i, word in enumerate(dict.fromkeys(words["train"]))}
    streams = {}
    for split, split_words in words.items():
        try:
            streams[split] = torch.tensor([index[word] for word in split_words], dtype=torch.int64)
        except KeyError as err:
            line = split_words[: split_words.index(err.args[0])].count(EOS) + 1
            raise DataError(f"{root / f'ptb.{split}.txt'} line {line}: word {err.args[0]!r} is not in the training "
                            "vocabulary; PTB is closed-vocabulary (rare words are <unk>), so the three "
                            f"files must come from the same release. {HOW_TO_GET}") from None
    return Corpus(list(index), streams["train"], streams["valid"], streams["test"])


def batchify(stream: torch.Tensor, batch: int) -> torch.Tensor:
    """(batch, T // batch): row r is the r-th contiguous chunk of the stream."""
    columns = len(stream) // batch
    if columns < 2:
        raise ValueError(f"A stream of {len(stream)} tokens is too short for batch size {batch}; "
                         "lower data.batch_size or data.eval_batch_size")
    return stream[: batch * columns].view(batch, columns)


def fixed_segments(columns: int, bptt: int) -> List[Tuple[int, int]]:
    """Segments (i, L) of length ``bptt`` (the last one shorter) tiling the ``columns - 1`` targets."""
    return [(i, min(bptt, columns - 1 - i)) for i in range(0, columns - 1, bptt)]


def expected_length(bptt: int) -> float:
    """Mean of AWD-LSTM's base length (bptt w.p. 0.95, else bptt / 2); the truncation to an
    integer and the clamps move the mean of the drawn lengths by under a token, which the
    rescaling in :func:`variable_segments` absorbs."""
    return 0.95 * bptt + 0.05 * bptt / 2


def variable_segments(columns: int, bptt: int, count: int, generator: torch.Generator) -> List[Tuple[int, int]]:
    """``count`` segments tiling the ``columns - 1`` targets, lengths drawn as in AWD-LSTM.

    AWD-LSTM draws base = bptt (probability 0.95) or bptt / 2, then L = max(5, int(N(base, 5))),
    capped at bptt + 40, until the epoch is covered, so its step count varies per epoch. The
    shared loop needs a fixed ``steps_per_epoch``, so we draw ``count`` lengths by that law and
    rescale them to sum to exactly ``columns - 1`` (largest-remainder rounding; the factor is
    within about 1 % of 1 at paper scale), which keeps their distribution and covers every
    target exactly once.
    """
    total = columns - 1
    if count > total:
        raise ValueError(f"Cannot cut {total} targets into {count} segments")
    base = torch.where(torch.rand(count, generator=generator) < 0.95, float(bptt), bptt / 2)
    drawn = (base + 5 * torch.randn(count, generator=generator, dtype=torch.float64)).trunc().clamp(5, bptt + 40)
    share = drawn * total / drawn.sum()
    lengths = share.floor().long().clamp(min=1)
    short = total - int(lengths.sum())
    order = torch.argsort(share - share.floor(), descending=True) if short > 0 else torch.argsort(lengths, descending=True)
    for j in order[: abs(short)].tolist():
        lengths[j] += 1 if short > 0 else -1
    starts = torch.cumsum(lengths, 0) - lengths
    return list(zip(starts.tolist(), lengths.tolist()))


def variable_count(columns: int, bptt: int) -> int:
    """Steps per epoch for variable-length BPTT: targets over the expected segment length."""
    return max(1, min(columns - 1, math.ceil((columns - 1) / expected_length(bptt))))
