"""Penn Treebank word-level language modelling (paper §5.3, Fig. 7a).

Paper protocol (conf/task_scale/ptb_paper.yaml): the AWD-LSTM of Merity et al.'s code base with
its defaults, variable-length truncated BPTT around 70, batch 80, clip 0.25, no NT-ASGD and no
fine-tuning. ``scale=cpu`` trains Zaremba et al.'s small LSTM (2 x 200, BPTT 20, batch 20).

Training feeds consecutive BPTT segments of ``data.batch_size`` parallel streams and carries the
LSTM state from one segment to the next (detached: truncated BPTT); each epoch starts from zero
state. Evaluation does the same with fixed segments of ``bptt`` tokens and reports, per split,
``<split>_loss`` = mean NLL per predicted token (nats) and ``<split>_ppl`` = exp of it, over
every target of the batchified split (validation in ``data.eval_batch_size`` streams, test in
``task.test_batch_size`` streams, as AWD-LSTM). Train perplexity is exp(``train_loss``).
Under DDP the streams of each training batch are split over ranks (the global batch is the
same for any world size) and every rank evaluates the whole splits. ``task.limit_eval_tokens``
(smoke scale) evaluates a fixed window of that many tokens of each split instead, starting at a
sentence drawn with a constant seed (``experiments/data/subset.py``; ``task_info.subset``).
"""

from __future__ import annotations

import math
from typing import Any, Iterator, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from experiments import distributed
from experiments.config import Config
from experiments.data.ptb import EOS, batchify, fixed_segments, load_ptb, variable_count, variable_segments
from experiments.data.subset import stream_window, subset_info
from experiments.models.lstm import LSTMLanguageModel
from experiments.tasks.base import Task, batch_generator
from experiments.train import keep_freed_memory


def _detach(hidden: Any) -> Any:
    return [tuple(s.detach() for s in layer) for layer in hidden]


def build(cfg: Config, device: torch.device) -> Task:
    t, bs = cfg.task, cfg.data.batch_size
    # The step's logits and their gradients are 16 MB buffers: keep them in the heap instead of
    # page-faulting them in again every step (see keep_freed_memory; results unchanged).
    heap_kept = keep_freed_memory() if device.type == "cpu" else False
    corpus = load_ptb(cfg.data.root)
    rank, world = distributed.rank_world()
    if bs % world:
        raise ValueError(f"data.batch_size={bs} must be a multiple of the {world} processes (streams per rank)")
    train = batchify(corpus.train, bs)[rank::world].contiguous().to(device)
    # task.limit_eval_tokens: a fixed window of each evaluation stream (experiments/data/subset.py).
    eos = corpus.words.index(EOS)
    (valid, valid_at), (test, test_at) = (stream_window(stream, t.limit_eval_tokens, eos)
                                          for stream in (corpus.valid, corpus.test))
    splits = {"val": batchify(valid, cfg.data.eval_batch_size).to(device),
              "test": batchify(test, t.test_batch_size or cfg.data.eval_batch_size).to(device)}
    columns = train.size(1)
    steps = variable_count(columns, t.bptt) if t.variable_bptt else len(fixed_segments(columns, t.bptt))
    model = LSTMLanguageModel(len(corpus.words), t.emb_size, t.hidden_size, t.num_layers, t.tie_weights, t.dropout,
                              t.dropouth, t.dropouti, t.dropoute, t.wdrop, t.model, t.init_range).to(device)

    def train_batches(epoch: int, start: int) -> Iterator[Tuple[torch.Tensor, torch.Tensor]]:
        # Segment lengths depend only on (seed, epoch), so a resumed epoch cuts the same segments.
        segments = (variable_segments(columns, t.bptt, steps, batch_generator(cfg.seed, epoch)) if t.variable_bptt
                    else fixed_segments(columns, t.bptt))
        for i, n in segments[start:]:
            yield train[:, i : i + n], train[:, i + 1 : i + 1 + n]

    def loss(m: nn.Module, batch: Tuple[torch.Tensor, torch.Tensor], carry: Any):
        x, y = batch
        logits, carry, (raw, dropped) = m(x, _detach(carry))
        nll = F.cross_entropy(logits.flatten(0, 1).float(), y.flatten())
        objective = nll + t.alpha_ar * dropped.float().pow(2).mean()  # AR
        if x.size(1) > 1:
            objective = objective + t.beta_tar * (raw[:, 1:] - raw[:, :-1]).float().pow(2).mean()  # TAR
        objective = objective * {"mean": 1.0, "awd": x.size(1) / t.bptt, "time_sum": x.size(1)}[t.loss_scale]
        # The loop logs the returned value: keep it the NLL per token while the gradient is the objective's.
        return nll.detach() + (objective - objective.detach()), _detach(carry)

    def mean_nll(m: nn.Module, data: torch.Tensor) -> float:
        hidden, total = m.init_hidden(data.size(0)), torch.zeros((), dtype=torch.float64, device=device)
        for i, n in fixed_segments(data.size(1), t.bptt):
            logits, hidden, _ = m(data[:, i : i + n], hidden)
            total += F.cross_entropy(logits.flatten(0, 1).float(), data[:, i + 1 : i + 1 + n].flatten(), reduction="sum")
        return total.item() / (data.size(0) * (data.size(1) - 1))

    def evaluate(m: nn.Module) -> dict:
        out = {}
        for split, data in splits.items():
            nll = mean_nll(m, data)
            out.update({f"{split}_loss": nll, f"{split}_ppl": math.exp(min(nll, 700.0))})
        return out

    info = {"vocab_size": len(corpus.words), "tokens": {s: len(getattr(corpus, s)) for s in ("train", "valid", "test")},
            "steps_per_epoch": steps, "parameters": sum(p.numel() for p in model.parameters()), "heap_kept": heap_kept,
            **subset_info(valid=(t.limit_eval_tokens, len(corpus.valid)), test=(t.limit_eval_tokens, len(corpus.test)))}
    if "subset" in info:  # where each window starts, in tokens
        info["subset"]["valid"]["start"], info["subset"]["test"]["start"] = valid_at, test_at
    return Task(model=model, steps_per_epoch=steps, train_batches=train_batches, loss=loss, evaluate=evaluate,
                target_metric="val_ppl", higher_is_better=False, init_carry=lambda: model.init_hidden(train.size(0)),
                examples_per_batch=bs * t.bptt, info=info)
