"""Corpus BLEU on detokenised text with sacrebleu (Post 2018), and its signature.

Hypotheses are the decoded, de-sentencepieced model outputs; references are the raw target
lines of the test set. Scoring uses sacrebleu's defaults (13a tokenisation, mixed case,
exponential smoothing, one reference), the configuration ``sacrebleu -t wmt14 -l en-de``
reports, so numbers are comparable with published sacreBLEU scores (e.g. 27.5 for
tensor2tensor's transformer_base) and not with compound-split, tokenised BLEU (e.g. the 27.3
of Vaswani et al. 2017). The signature string records that configuration and the version.
"""

from __future__ import annotations

from typing import Sequence, Tuple


def _metric():
    from sacrebleu.metrics import BLEU

    return BLEU()


def corpus_bleu(hypotheses: Sequence[str], references: Sequence[str]) -> Tuple[float, str]:
    """BLEU (0-100) of ``hypotheses`` against one reference each, and sacrebleu's signature.

    Raises:
        ValueError: the two lists differ in length.
    """
    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} hypotheses but {len(references)} references; give one reference per line")
    metric = _metric()
    score = metric.corpus_score(list(hypotheses), [list(references)])
    return float(score.score), str(metric.get_signature())


def bleu_signature() -> str:
    """The signature :func:`corpus_bleu` reports, e.g. ``nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:2.6.0``."""
    metric = _metric()
    metric.corpus_score(["."], [["."]])  # sacrebleu fills in the signature on the first score
    return str(metric.get_signature())
