"""Length-bucketed token batching for sentence pairs, and padding them into tensors.

A batch's cost is its padded size, ``|B| * max_{i in B} n_i`` with ``n_i = max(src_i, tgt_i) + 1``
(the +1 is the eos on the source and the bos/eos on the target side). Sentences are sorted by
``n_i`` and cut greedily into batches whose cost stays within ``max_tokens``, so batches hold
sentences of similar length (little padding) and roughly the same number of tokens, as in
Vaswani et al. (2017, §5.1: "batched together by approximate sequence length").

Per epoch, ties in length are broken in a random order and the batch order is shuffled, both
from the generator the task derives from ``(seed, epoch)``. Since the sorted sequence of
lengths does not depend on the tie order, every epoch cuts the same number of batches of the
same sizes: ``steps_per_epoch`` is a constant, and every pair is used exactly once per epoch.
"""

from __future__ import annotations

from typing import List, Optional, Sequence, Tuple

import torch

from experiments.data.spm import BOS, EOS, PAD, Encoded


def token_batches(src_lengths: torch.Tensor, tgt_lengths: torch.Tensor, max_tokens: int,
                  generator: Optional[torch.Generator] = None) -> List[torch.Tensor]:
    """Index batches covering every pair once, each of padded size at most ``max_tokens``.

    Args:
        src_lengths, tgt_lengths: (n,) sentence lengths in pieces (without eos/bos).
        max_tokens: budget per batch in padded tokens.
        generator: shuffles ties and the batch order; ``None`` keeps length order (evaluation).

    Raises:
        ValueError: a single pair is longer than ``max_tokens``.
    """
    if len(src_lengths) != len(tgt_lengths):
        raise ValueError(f"src_lengths ({len(src_lengths)}) and tgt_lengths ({len(tgt_lengths)}) differ in size")
    n = len(src_lengths)
    if n == 0:
        return []
    size = torch.maximum(src_lengths, tgt_lengths).long() + 1
    if int(size.max()) > max_tokens:
        raise ValueError(f"A sentence pair of {int(size.max())} tokens does not fit max_tokens={max_tokens}; "
                         "raise task.max_tokens or lower task.max_len")
    order = torch.randperm(n, generator=generator) if generator is not None else torch.arange(n)
    order = order[torch.sort(size[order], stable=True).indices]
    batches, start = [], 0
    for i, length in enumerate(size[order].tolist()):
        if (i - start + 1) * length > max_tokens:  # sorted ascending: the newest pair is the longest
            batches.append(order[start:i])
            start = i
    batches.append(order[start:])
    if generator is not None:
        batches = [batches[j] for j in torch.randperm(len(batches), generator=generator).tolist()]
    return batches


def _padded(enc: Encoded, index: torch.Tensor, before: Optional[int], after: Optional[int]) -> torch.Tensor:
    """Sentences ``index`` of ``enc`` as int64 rows ``[before] + ids + [after]`` padded with PAD
    to the longest (``before``/``after`` None: nothing there). One gather for the whole batch
    instead of a concatenation per sentence."""
    starts = enc.offsets[index]
    lengths = enc.offsets[index + 1] - starts
    width = int(lengths.max()) if len(index) else 0
    cols = torch.arange(width)
    inside = cols < lengths[:, None]
    at = (starts[:, None] + cols).clamp_(max=max(len(enc.ids) - 1, 0))  # past a sentence's end: masked below
    body = enc.ids.index_select(0, at.flatten()).view(at.shape)
    rows = torch.where(inside, body.long(), PAD)
    if after is not None:
        rows = torch.cat([rows, rows.new_full((len(index), 1), PAD)], 1)
        rows[torch.arange(len(index)), lengths] = after
    if before is not None:
        rows = torch.cat([rows.new_full((len(index), 1), before), rows], 1)
    return rows


def collate(src: Encoded, tgt: Optional[Encoded], index: Sequence[int] | torch.Tensor,
            device: torch.device) -> Tuple[torch.Tensor, Optional[torch.Tensor], Optional[torch.Tensor]]:
    """Pad pairs ``index`` into ``(src, tgt_in, tgt_out)``, each (batch, length) int64.

    ``src`` is ``x + [eos]``; the decoder reads ``tgt_in = [bos] + y`` and predicts
    ``tgt_out = y + [eos]`` (teacher forcing). Without ``tgt`` only ``src`` is returned.
    """
    index = torch.as_tensor(index, dtype=torch.long).flatten()
    x = _padded(src, index, None, EOS)
    if tgt is None:
        return x.to(device), None, None
    y_in, y_out = _padded(tgt, index, BOS, None), _padded(tgt, index, None, EOS)
    return x.to(device), y_in.to(device), y_out.to(device)
