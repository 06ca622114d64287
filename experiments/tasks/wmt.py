"""WMT14 English-German translation with a Transformer (paper §5.4, Fig. 7b); Multi30k at CPU scale.

Paper protocol (conf/task/wmt14.yaml, conf/task_scale/wmt14_paper.yaml, conf/task_optim/):
Transformer base, label smoothing 0.1, length-bucketed token batches, 50k steps, Adam
(0.9, 0.98, 1e-9) with inverse-sqrt warmup, Adafactor, Lookahead(Adam) with and without
warmup. Metrics: ``train_loss`` (label-smoothed), teacher-forced ``{val,test}_loss`` and
``_ppl`` (per target piece, no smoothing), and ``test_bleu``: detokenised sacreBLEU of the
decoded test set (beam 4, length penalty 0.6). Intermediate evaluations may decode greedily
and on a prefix of the test set (``task.eval_decode``, ``task.bleu_max_sentences``); the last
one always decodes the whole set with ``task.decode``. ``task.limit_eval`` (smoke scale) cuts
the validation and test sets to a fixed random subset of sentences drawn with a constant seed
(``experiments/data/subset.py``), for the perplexities and BLEU alike. The task knows which
evaluation is the last from the step of the last batch it served. The sacreBLEU signature and
the vocabulary go to ``Task.info`` (the manifest's ``task_info``), and so does which dropout
masks trained the model (``dropout_masks``: ``bits``, the Transformer's 16-bit CPU masks, or
``torch``; see experiments/models/transformer.py).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from experiments import distributed
from experiments.config import Config
from experiments.data.batching import collate, token_batches
from experiments.data.bleu import corpus_bleu
from experiments.data.spm import PAD
from experiments.data.subset import subset_index, subset_info
from experiments.data.translation import load_corpus, translate
from experiments.models.transformer import Transformer
from experiments.tasks.base import Task, batch_generator
from experiments.train import keep_freed_memory, total_steps


def build(cfg: Config, device: torch.device) -> Task:
    t, ebs = cfg.task, cfg.data.eval_batch_size
    # The step's logits and their gradients are buffers of up to 65 MB: keep them in the heap
    # instead of page-faulting them in again every step (see keep_freed_memory; results unchanged).
    heap_kept = keep_freed_memory() if device.type == "cpu" else False
    corpus = load_corpus(cfg.data.root, t)
    # task.limit_eval: the same fixed random sentences of each evaluation split in every run.
    sizes = {"test": len(corpus.test.refs)}
    if corpus.valid is not None:
        sizes["valid"] = len(corpus.valid.refs)
    if t.limit_eval:
        corpus.test = corpus.test.select(subset_index(sizes["test"], t.limit_eval))
        if corpus.valid is not None:
            corpus.valid = corpus.valid.select(subset_index(sizes["valid"], t.limit_eval))
    src, tgt = corpus.train
    model = Transformer(corpus.sp.get_piece_size(), t.d_model, t.num_layers, t.num_heads, t.ff_size, t.dropout).to(device)
    steps = len(token_batches(src.lengths, tgt.lengths, t.max_tokens))
    served = [0]  # the global step of the last batch handed to the loop

    def train_batches(epoch: int, start: int):
        batches = token_batches(src.lengths, tgt.lengths, t.max_tokens, batch_generator(cfg.seed, epoch))
        for i in range(start, steps):
            served[0] = epoch * steps + i + 1
            yield collate(src, tgt, distributed.shard(batches[i]), device)

    def loss(m: nn.Module, batch, carry):
        x, y_in, y_out = batch
        logits = m(x, y_in).float()
        return F.cross_entropy(logits.flatten(0, 1), y_out.flatten(), ignore_index=PAD,
                               label_smoothing=t.label_smoothing), carry

    def nll(m: Transformer, split) -> float:
        total, count = 0.0, 0
        for idx in token_batches(split.src.lengths, split.tgt.lengths, max(t.max_tokens, t.max_len + 1)):
            x, y_in, y_out = collate(split.src, split.tgt, idx, device)
            total += F.cross_entropy(m(x, y_in).float().flatten(0, 1), y_out.flatten(), ignore_index=PAD,
                                     reduction="sum").item()
            count += int(y_out.ne(PAD).sum())
        return total / count

    def evaluate(m: Transformer) -> dict:
        out = {}
        for name, split in (("val", corpus.valid), ("test", corpus.test)):
            if split is not None:
                out[f"{name}_loss"] = nll(m, split)
                out[f"{name}_ppl"] = math.exp(min(out[f"{name}_loss"], 50.0))
        last = served[0] >= total_steps(cfg, task)
        decoder, limit = (t.decode, 0) if last else (t.eval_decode, t.bleu_max_sentences)
        hyps = translate(m, corpus.sp, corpus.test.src, t, decoder, ebs, device, limit)
        out["test_bleu"], signature = corpus_bleu(hyps, corpus.test.refs[: len(hyps)])
        beam = f"beam {t.beam_size}, length penalty {t.length_penalty}"
        task.info.update(bleu_signature=signature, bleu_decode=beam if decoder == "beam" else "greedy",
                         bleu_sentences=len(hyps))
        return out

    tokens = int(tgt.lengths.sum() + len(tgt)) // max(steps, 1)  # target pieces (+eos) per step
    task = Task(model=model, steps_per_epoch=steps, train_batches=train_batches, loss=loss, evaluate=evaluate,
                target_metric="test_bleu", examples_per_batch=tokens)
    # Which dropout masks the model trains with (experiments/models/transformer.py).
    bits = model.dropout_masks == "bits" and device.type == "cpu" and not cfg.trainer.compile
    masks = "bits" if bits else "torch"
    task.info.update(corpus.info, test_split=t.test_split, heap_kept=heap_kept, dropout_masks=masks,
                     **subset_info(**{name: (t.limit_eval, n) for name, n in sizes.items()}))
    return task
