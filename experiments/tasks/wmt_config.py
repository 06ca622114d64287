"""Config schema of the WMT14 en-de translation task (Multi30k at CPU scale)."""

from __future__ import annotations

from dataclasses import dataclass

from experiments.config import TaskConfig
from experiments.tasks.limits import check_limits

DECODERS = ("beam", "greedy")


@dataclass
class WMTTaskConfig(TaskConfig):
    """Transformer translation (paper §5.4). Sizes per scale in conf/task_scale/.

    Data under ``data.root``: plain parallel text ``<split>.<lang>`` (or, for training, the
    ``train.<src>-<tgt>.pt`` tensors written by scripts/data/prepare_wmt14.py). The joint BPE
    model is ``spm_model`` if given, else ``<data.root>/spm.model`` if present, else trained on
    the training text and cached in ``cache_dir``.

    ``limit_eval`` > 0 (smoke scale) keeps a fixed random subset of that many sentences of the
    validation and of the test split, the same in every run (``experiments/data/subset.py``;
    recorded in ``task_info.subset``): the perplexities and the final BLEU use those sentences,
    intermediate BLEU the first ``bleu_max_sentences`` of them. 0 keeps the splits whole.
    """

    src_lang: str = "en"
    tgt_lang: str = "de"
    train_split: str = "train"
    valid_split: str = ""  # "" : no validation split (teacher-forced loss and perplexity only)
    test_split: str = "newstest2014"
    spm_model: str = ""
    cache_dir: str = "runs/.cache"
    vocab_size: int = 32000  # when the BPE model is trained here
    d_model: int = 512
    num_layers: int = 6
    num_heads: int = 8
    ff_size: int = 2048
    dropout: float = 0.1
    label_smoothing: float = 0.1
    max_tokens: int = 4096  # padded tokens per length-bucketed batch (global over ranks)
    max_len: int = 256  # training pairs with a longer side (in pieces) are dropped
    beam_size: int = 4
    length_penalty: float = 0.6
    decode: str = "beam"  # beam | greedy, at the final evaluation
    eval_decode: str = "beam"  # beam | greedy, at intermediate evaluations
    bleu_max_sentences: int = 0  # > 0: intermediate evaluations decode only this many test sentences
    limit_eval: int = 0  # > 0: a fixed random subset of N validation and N test sentences; 0: all

    def __post_init__(self) -> None:
        check_limits(self, "limit_eval")
        for key in ("decode", "eval_decode"):
            if getattr(self, key) not in DECODERS:
                raise ValueError(f"Invalid task.{key}: {getattr(self, key)!r}; choose one of {', '.join(DECODERS)}")
        if self.beam_size < 1:
            raise ValueError(f"Invalid task.beam_size: {self.beam_size!r}; must be >= 1")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise ValueError(f"Invalid task.label_smoothing: {self.label_smoothing!r}; must lie in [0, 1)")
        if self.max_len + 1 > self.max_tokens:
            raise ValueError(f"task.max_tokens={self.max_tokens} cannot hold one pair of task.max_len={self.max_len} "
                             "pieces plus eos; raise max_tokens or lower max_len")
        if self.d_model % self.num_heads:
            raise ValueError(f"task.d_model={self.d_model} is not divisible by task.num_heads={self.num_heads}")
