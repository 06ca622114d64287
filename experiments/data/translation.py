"""A translation corpus on disk -> encoded splits, and a trained model -> translated text.

Layout of ``data.root`` (the parallel text is what Multi30k and the WMT test sets ship):

- ``<split>.<src>`` / ``<split>.<tgt>``: line-aligned plain text for any split;
- ``train.<src>-<tgt>.pt`` (optional): the encoded training pairs written by
  ``scripts/data/prepare_wmt14.py``, used instead of ``train.<src>``/``train.<tgt>``;
- ``spm.model`` (optional): the joint BPE model those tensors were encoded with.

Evaluation splits are always read as text, because BLEU needs the raw reference lines.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import torch

from experiments.data.batching import collate
from experiments.data.parallel import read_parallel
from experiments.data.spm import BOS, EOS, Encoded, cached_spm, decode, encode, load_model, sha256
from experiments.errors import DataError
from experiments.models.transformer import Transformer, beam_search, greedy
from experiments.tasks.wmt_config import WMTTaskConfig

EXTRA_DECODE_LEN = 50  # outputs may be this many pieces longer than their source (as tensor2tensor)


@dataclass
class Split:
    src: Encoded
    tgt: Encoded
    refs: List[str]  # the raw target lines, BLEU's references

    def select(self, index: torch.Tensor) -> "Split":
        """The sentences ``index`` (in that order), e.g. a fixed subset (experiments/data/subset.py)."""
        return Split(self.src.select(index), self.tgt.select(index), [self.refs[i] for i in index.tolist()])


@dataclass
class Corpus:
    sp: Any  # sentencepiece.SentencePieceProcessor
    train: Tuple[Encoded, Encoded]
    valid: Optional[Split]
    test: Split
    info: Dict[str, Any] = field(default_factory=dict)


def _how_to_get(root: Path, t: WMTTaskConfig) -> str:
    if t.dataset == "wmt14":
        return (f"For WMT14 run `python scripts/data/prepare_wmt14.py RAW_DIR {root}` on the WMT14 training "
                "corpora (see its docstring), or set data.root to a folder holding them.")
    return f"Set data.root (or LOOKAHEAD_DATA) to the folder holding the {t.dataset} parallel text."


def load_corpus(root: str | Path, t: WMTTaskConfig) -> Corpus:
    """Read, tokenise and filter the splits named by ``t``; see the module docstring for the layout."""
    root, pair = Path(root), f"{t.src_lang}-{t.tgt_lang}"
    hint = _how_to_get(root, t)
    if not root.is_dir():
        raise DataError(f"Dataset folder {root} does not exist. {hint}")
    prepared = root / f"{t.train_split}.{pair}.pt"
    text = None if prepared.is_file() else read_parallel(root, t.train_split, t.src_lang, t.tgt_lang, hint)
    if t.spm_model or (root / "spm.model").is_file():
        path = Path(t.spm_model) if t.spm_model else root / "spm.model"
        if not path.is_file():
            raise DataError(f"task.spm_model={t.spm_model} does not exist; give a sentencepiece model file or leave it empty")
        proto, origin = path.read_bytes(), str(path)
    elif text is not None:
        proto, origin = cached_spm(text[0] + text[1], t.vocab_size, t.cache_dir)
    else:
        raise DataError(f"{prepared} needs the sentencepiece model it was encoded with ({root / 'spm.model'}). {hint}")
    sp = load_model(proto)
    if text is None:
        blob = torch.load(prepared, map_location="cpu", weights_only=True)
        if blob.get("spm_sha256") != sha256(proto):
            raise DataError(f"{prepared} was encoded with another sentencepiece model than {origin}; "
                            "re-run scripts/data/prepare_wmt14.py or point task.spm_model at the model it wrote")
        src, tgt = Encoded.from_dict(blob["src"]), Encoded.from_dict(blob["tgt"])
    else:
        src, tgt = encode(sp, text[0]), encode(sp, text[1])
    # Drop pairs with an empty side or a side longer than max_len (as the usual NMT recipes do).
    keep = ((src.lengths >= 1) & (tgt.lengths >= 1) & (src.lengths <= t.max_len) & (tgt.lengths <= t.max_len))
    index = keep.nonzero().flatten()
    if len(index) == 0:
        raise DataError(f"No usable training pairs in {root} (all empty or longer than task.max_len={t.max_len}).")

    def split(name: str) -> Split:
        s, r = read_parallel(root, name, t.src_lang, t.tgt_lang, hint)
        return Split(encode(sp, s), encode(sp, r), r)

    info = {"spm_model": origin if origin.startswith("trained") else Path(origin).name, "spm_sha256": sha256(proto),
            "vocab_size": sp.get_piece_size(), "train_pairs": len(index), "train_pairs_dropped": len(src) - len(index)}
    valid = split(t.valid_split) if t.valid_split else None
    return Corpus(sp, (src.select(index), tgt.select(index)), valid, split(t.test_split), info)


def translate(model: Transformer, sp: Any, src: Encoded, t: WMTTaskConfig, decoder: str, batch_size: int,
              device: torch.device, limit: int = 0) -> List[str]:
    """Decode the first ``limit`` (0: all) sentences of ``src`` to detokenised text, in order.

    Sentences are decoded in batches of similar source length; outputs may be up to
    ``EXTRA_DECODE_LEN`` pieces longer than the longest source of their batch.
    """
    n = min(limit, len(src)) if limit else len(src)
    order = torch.argsort(src.lengths[:n], stable=True).tolist()
    out: List[List[int]] = [[] for _ in range(n)]
    for i in range(0, n, batch_size):
        idx = order[i : i + batch_size]
        x, _, _ = collate(src, None, idx, device)
        max_len = x.size(1) + EXTRA_DECODE_LEN
        if decoder == "beam":
            hyps = beam_search(model, x, t.beam_size, max_len, t.length_penalty, BOS, EOS)
        else:
            hyps = greedy(model, x, max_len, BOS, EOS)
        for j, h in zip(idx, hyps):
            out[j] = h
    return decode(sp, out)
