"""Config schema of the WMT14 en-de translation task (Multi30k at CPU scale)."""

from __future__ import annotations

from dataclasses import dataclass

from experiments.config import TaskConfig


@dataclass
class WMTTaskConfig(TaskConfig):
    """Transformer translation (paper §5.4). Sizes per scale in conf/task_scale/."""

    src_lang: str = "en"
    tgt_lang: str = "de"
    vocab_size: int = 32000
    d_model: int = 512
    num_layers: int = 6
    num_heads: int = 8
    ff_size: int = 2048
    dropout: float = 0.1
    label_smoothing: float = 0.1
    max_tokens: int = 4096  # tokens per length-bucketed batch
    max_len: int = 256
    beam_size: int = 4
    length_penalty: float = 0.6
    decode: str = "beam"  # beam | greedy
    test_split: str = "newstest2014"
    bleu_max_sentences: int = 0  # > 0: decode only this many test sentences per evaluation
