"""A joint sentencepiece BPE vocabulary, and corpora encoded as flat id tensors.

One BPE model (Sennrich et al. 2016, as implemented by sentencepiece, Kudo & Richardson 2018)
is trained on the source and target training text together, so both languages share one
vocabulary and the Transformer can tie its source, target and output embeddings. It works on
raw, untokenised text and its decoding restores that text exactly (spaces are pieces), so
BLEU is computed on detokenised output without any extra tool.

Special ids are fixed for every model the suite trains: ``pad 0, unk 1, bos 2, eos 3``.
"""

from __future__ import annotations

import hashlib
import io
import itertools
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterable, List, Sequence

import numpy as np
import sentencepiece as spm
import torch

from experiments.errors import DataError

PAD, UNK, BOS, EOS = 0, 1, 2, 3


def train_spm(lines: Iterable[str], vocab_size: int, *, character_coverage: float = 1.0,
              max_sentences: int = 0, seed: int = 0, threads: int = 1) -> bytes:
    """Train a BPE sentencepiece model on ``lines`` and return the serialized model.

    Args:
        lines: training sentences of both languages (the joint vocabulary).
        vocab_size: number of pieces, special ids included.
        character_coverage: fraction of characters the model must cover; the rest map to unk.
        max_sentences: > 0: train on a seeded random sample of this many sentences (large corpora).
        seed: seed of that sample.
        threads: trainer threads.
    """
    spm.set_random_generator_seed(seed)
    buffer = io.BytesIO()
    try:
        spm.SentencePieceTrainer.train(
            sentence_iterator=iter(lines), model_writer=buffer, model_type="bpe", vocab_size=vocab_size,
            character_coverage=character_coverage, pad_id=PAD, unk_id=UNK, bos_id=BOS, eos_id=EOS,
            input_sentence_size=max_sentences, shuffle_input_sentence=max_sentences > 0,
            num_threads=threads, minloglevel=2)
    except RuntimeError as err:  # e.g. more pieces asked for than the text can give
        raise ValueError(f"sentencepiece could not train a BPE model with vocab_size={vocab_size}: {err}") from err
    return buffer.getvalue()


def load_model(proto: bytes, origin: str = "") -> spm.SentencePieceProcessor:
    """The processor of a serialized model; one that does not parse is a DataError naming ``origin``."""
    try:
        return spm.SentencePieceProcessor(model_proto=proto)
    except RuntimeError as err:  # sentencepiece says only that ParseFromArray failed
        where = origin or "the sentencepiece model (task.spm_model or <data.root>/spm.model)"
        raise DataError(f"{where} is not a readable sentencepiece model; replace it with the model the "
                        "data was encoded with") from err


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def cached_spm(lines: Sequence[str], vocab_size: int, cache_dir: str | Path) -> tuple[bytes, str]:
    """The BPE model for ``lines``, trained once and kept in ``cache_dir``.

    The file name is a hash of the training text and the vocabulary size, so a run that resumes
    (or a second run on the same data) reuses the very same vocabulary. Writing is atomic; when
    ``cache_dir`` cannot be written the model is trained and kept in memory only.

    A cached file that does not parse (a crash mid-copy, a disk error) is a DataError naming
    the file to delete; the next run then trains it again.

    Returns:
        (serialized model, where it came from).
    """
    digest = hashlib.sha256(f"bpe|{vocab_size}|{len(lines)}|".encode())
    for line in lines:
        digest.update(line.encode("utf-8") + b"\n")
    path = Path(cache_dir) / f"spm_bpe{vocab_size}_{digest.hexdigest()[:16]}.model"
    if path.is_file():
        proto = path.read_bytes()
        try:
            spm.SentencePieceProcessor(model_proto=proto)
        except RuntimeError as err:  # sentencepiece says only that ParseFromArray failed
            raise DataError(f"The cached sentencepiece model {path} is corrupt; delete it and run again to "
                            "retrain it") from err
        return proto, str(path)
    proto = train_spm(lines, vocab_size)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        tmp.write_bytes(proto)
        os.replace(tmp, path)
        return proto, str(path)
    except OSError:
        return proto, "trained in memory (cache not writable)"


@dataclass
class Encoded:
    """Variable-length id sequences stored flat: sentence ``i`` is ``ids[offsets[i]:offsets[i + 1]]``.

    Flat int32 storage keeps millions of sentences compact and saves as two tensors.
    """

    ids: torch.Tensor  # (total,) int32
    offsets: torch.Tensor  # (n + 1,) int64

    def __len__(self) -> int:
        return self.offsets.numel() - 1

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.ids[self.offsets[i] : self.offsets[i + 1]]

    @property
    def lengths(self) -> torch.Tensor:
        return self.offsets.diff()

    def select(self, index: torch.Tensor) -> "Encoded":
        """The sentences ``index`` (in that order), as a new flat store."""
        lengths = self.lengths[index]
        offsets = torch.cat([torch.zeros(1, dtype=torch.long), lengths.cumsum(0)])
        starts = torch.repeat_interleave(self.offsets[:-1][index] - offsets[:-1], lengths)
        return Encoded(self.ids[starts + torch.arange(int(offsets[-1]))], offsets)

    def to_dict(self) -> Dict[str, torch.Tensor]:
        return {"ids": self.ids, "offsets": self.offsets}

    @staticmethod
    def from_dict(d: Dict[str, torch.Tensor]) -> "Encoded":
        return Encoded(d["ids"].to(torch.int32), d["offsets"].to(torch.long))


def encode(sp: spm.SentencePieceProcessor, lines: Sequence[str], chunk: int = 100_000) -> Encoded:
    """Encode ``lines`` to ids (no bos/eos: those are added when batching)."""
    parts: List[np.ndarray] = []
    lengths: List[int] = []
    for i in range(0, len(lines), chunk):
        pieces = sp.encode(list(lines[i : i + chunk]))
        lengths.extend(len(p) for p in pieces)
        parts.append(np.fromiter(itertools.chain.from_iterable(pieces), dtype=np.int32))
    ids = torch.from_numpy(np.concatenate(parts)) if parts else torch.zeros(0, dtype=torch.int32)
    offsets = torch.cat([torch.zeros(1, dtype=torch.long), torch.tensor(lengths, dtype=torch.long).cumsum(0)])
    return Encoded(ids, offsets)


def decode(sp: spm.SentencePieceProcessor, sequences: Iterable[Sequence[int]]) -> List[str]:
    """Ids back to detokenised text."""
    return [sp.decode(list(map(int, s))) for s in sequences]
