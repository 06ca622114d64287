"""LSTM language models for Penn Treebank: AWD-LSTM (Merity et al. 2018) and Zaremba et al. (2014).

One module covers both, since Zaremba's non-regularised LSTM is AWD-LSTM's architecture with
every regulariser off. With tokens x (batch, L) and per-layer LSTMs f_1..f_n::

    e = dropouti(embed(x; dropoute))        # embedding dropout drops whole words (rows of E)
    h_l = f_l(h_{l-1}; W_hh dropped with wdrop),  dropouth between layers
    logits = decoder(dropout(h_n))          # decoder weight = E when tie_weights

- Embedding dropout: E' = m * E / (1 - p), m ~ Bernoulli(1 - p) per vocabulary row, one mask
  per forward, so a dropped word is dropped at every position of the batch.
- Locked (variational) dropout: one mask per sequence, shared across time steps.
- Weight drop (DropConnect on W_hh): dropout on the hidden-to-hidden matrix itself, one mask per
  forward (so per batch, shared over its time steps), passed to a stock ``nn.LSTM`` through
  ``torch.func.functional_call``; the layer keeps the fused kernels (cuDNN on GPU) and its
  parameter stays the raw ``weight_hh_l0``, which the optimizer and Lookahead's slow weights
  see. (A ``parametrize`` version would leave the dropped matrix cached inside ``nn.LSTM``,
  which breaks ``deepcopy``, e.g. for Polyak averaging.)
- AR/TAR terms use the last layer's dropped and raw outputs, returned by ``forward``.

Mixed precision: under a CPU autocast (``trainer.precision=bf16``) the embedding, dropouts and
decoder follow autocast (the decoder, most of the FLOPs at PTB sizes, runs in bf16) while each
``nn.LSTM`` runs in fp32 on fp32 inputs and state. oneDNN has a bf16 LSTM primitive only on
CPUs with AVX512_BF16/AMX and fails on the others ("could not create a primitive descriptor
for the LSTM forward propagation primitive", e.g. on an AVX2-only AMD EPYC); an fp32 recurrence
runs everywhere, is computed alike on AMX and AVX2 machines, and keeps the carried state (h, c),
which flows through every segment of an epoch, out of bf16's 8-bit mantissa. It costs speed
where bf16 is native: on the AMX Xeon a bf16 LSTM made the PTB step 1.4x faster than fp32, the
fp32 recurrence 1.2x (measured beside other jobs). On CUDA the LSTM follows autocast (cuDNN
has bf16 kernels).

Initialisation: ``awd_lstm`` draws the embedding and decoder weights from U(-r, r), zeroes the
decoder bias and keeps PyTorch's LSTM default; ``lstm`` (Zaremba) draws every parameter from
U(-r, r) with r = ``init_range`` (0.1 in both code bases).
"""

from __future__ import annotations

from typing import Dict, List, Tuple

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

Hidden = List[Tuple[torch.Tensor, torch.Tensor]]
MODELS = ("awd_lstm", "lstm")


def locked_dropout(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """Dropout with one mask per sequence of ``x`` (batch, L, H), shared over the L steps."""
    if not training or p == 0:
        return x
    mask = x.new_empty(x.size(0), 1, x.size(2)).bernoulli_(1 - p) / (1 - p)
    return x * mask


def embedding_dropout(embed: nn.Embedding, x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """Look up ``x`` in the embedding with whole rows (words) dropped and the rest scaled up."""
    weight = embed.weight
    if training and p > 0:
        weight = weight * weight.new_empty(weight.size(0), 1).bernoulli_(1 - p) / (1 - p)
    return F.embedding(x, weight)


def recurrence(rnn: nn.LSTM, x: torch.Tensor, h: Tuple[torch.Tensor, torch.Tensor],
               weights: Dict[str, torch.Tensor]) -> Tuple[torch.Tensor, Tuple[torch.Tensor, torch.Tensor]]:
    """``rnn(x, h)`` with ``weights`` substituted; on CPU in fp32 even under autocast (see module doc)."""
    if x.device.type == "cpu" and torch.is_autocast_enabled("cpu"):
        with torch.autocast("cpu", enabled=False):
            x, h = x.float(), (h[0].float(), h[1].float())
            return functional_call(rnn, weights, (x, h)) if weights else rnn(x, h)
    return functional_call(rnn, weights, (x, h)) if weights else rnn(x, h)


class LSTMLanguageModel(nn.Module):
    """Word-level LSTM LM; ``forward(x, hidden) -> (logits, hidden, (raw_last, dropped_last))``."""

    def __init__(self, vocab_size: int, emb_size: int, hidden_size: int, num_layers: int,
                 tie_weights: bool = False, dropout: float = 0.0, dropouth: float = 0.0,
                 dropouti: float = 0.0, dropoute: float = 0.0, wdrop: float = 0.0,
                 init: str = "awd_lstm", init_range: float = 0.1) -> None:
        super().__init__()
        if init not in MODELS:
            raise ValueError(f"Invalid task.model: {init!r}; choose one of {', '.join(MODELS)}")
        if num_layers < 1:
            raise ValueError(f"Invalid task.num_layers: {num_layers!r}; must be >= 1")
        for name, p in dict(dropout=dropout, dropouth=dropouth, dropouti=dropouti, dropoute=dropoute,
                            wdrop=wdrop).items():
            if not 0.0 <= p < 1.0:
                raise ValueError(f"Invalid task.{name}: {p!r}; a dropout probability must lie in [0, 1)")
        self.dropout, self.dropouth, self.dropouti, self.dropoute, self.wdrop = dropout, dropouth, dropouti, dropoute, wdrop
        self.encoder = nn.Embedding(vocab_size, emb_size)
        # The last layer's width equals the embedding's when the decoder reuses the embedding.
        sizes = [emb_size] + [hidden_size] * (num_layers - 1) + [emb_size if tie_weights else hidden_size]
        self.rnns = nn.ModuleList(nn.LSTM(sizes[i], sizes[i + 1], batch_first=True) for i in range(num_layers))
        self.decoder = nn.Linear(sizes[-1], vocab_size)
        if init == "lstm":
            for p in self.parameters():
                nn.init.uniform_(p, -init_range, init_range)
        else:
            nn.init.uniform_(self.encoder.weight, -init_range, init_range)
            nn.init.uniform_(self.decoder.weight, -init_range, init_range)
            nn.init.zeros_(self.decoder.bias)
        if tie_weights:
            self.decoder.weight = self.encoder.weight

    def init_hidden(self, batch_size: int) -> Hidden:
        weight = self.encoder.weight
        return [(weight.new_zeros(1, batch_size, rnn.hidden_size), weight.new_zeros(1, batch_size, rnn.hidden_size))
                for rnn in self.rnns]

    def forward(self, x: torch.Tensor, hidden: Hidden) -> Tuple[torch.Tensor, Hidden, Tuple[torch.Tensor, torch.Tensor]]:
        out = locked_dropout(embedding_dropout(self.encoder, x, self.dropoute, self.training), self.dropouti,
                             self.training)
        new_hidden: Hidden = []
        raw = out
        for i, (rnn, h) in enumerate(zip(self.rnns, hidden)):
            weights = {}
            if self.training and self.wdrop > 0:
                weights = {"weight_hh_l0": F.dropout(rnn.weight_hh_l0, self.wdrop, training=True)}
            raw, h_new = recurrence(rnn, out, h, weights)
            new_hidden.append(h_new)
            last = i == len(self.rnns) - 1
            out = locked_dropout(raw, self.dropout if last else self.dropouth, self.training)
        return self.decoder(out), new_hidden, (raw, out)
