"""The interface between a task and the one training loop.

A task file builds a :class:`Task` from its config and says what is special about the task
(model, data, loss, metrics) and nothing else: the loop, the optimizer factory, logging,
checkpointing and the evaluation of slow/fast/averaged weights are shared.

Exact resume depends on one property: ``train_batches(epoch, start)`` must yield the same
batches for the same ``(seed, epoch, start)`` in any process, so a task derives every random
choice of its data pipeline (shuffling, augmentation, BPTT lengths) from those numbers instead
of from global RNG state.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterator, Optional, Tuple

import torch
from torch import nn

Batch = Any
Carry = Any


@dataclass
class Task:
    """What the loop needs from a task.

    Attributes:
        model: the network, already on the run's device.
        steps_per_epoch: optimizer steps in one pass over the training data.
        train_batches: ``(epoch, start) -> iterator`` over the batches of ``epoch`` from batch
            index ``start`` on, deterministic given the run's seed.
        loss: ``(model, batch, carry) -> (loss, carry)``; ``carry`` threads state across batches
            (the LSTM's hidden state) and is ``None`` for stateless tasks.
        evaluate: ``model -> {"val_loss": ..., "test_acc": ...}``, split-prefixed metrics.
        target_metric: the metric tables report (e.g. ``test_acc``), with ``higher_is_better``.
        init_carry: the carry at the start of every epoch.
        bn_batches: ``n -> iterator`` of training inputs for re-estimating BatchNorm statistics
            (``None`` when the model has no BatchNorm).
        examples_per_batch: images or tokens per step, for throughput.
        per_update_evaluate: a cheaper evaluation for per-update logging (paper Fig. 10);
            defaults to ``evaluate``.
        info: facts about the run the manifest records (e.g. the sacrebleu signature); the
            task may fill it during evaluation.
    """

    model: nn.Module
    steps_per_epoch: int
    train_batches: Callable[[int, int], Iterator[Batch]]
    loss: Callable[[nn.Module, Batch, Carry], Tuple[torch.Tensor, Carry]]
    evaluate: Callable[[nn.Module], Dict[str, float]]
    target_metric: str
    higher_is_better: bool = True
    init_carry: Callable[[], Carry] = field(default=lambda: None)
    bn_batches: Optional[Callable[[int], Iterator[torch.Tensor]]] = None
    examples_per_batch: int = 0
    per_update_evaluate: Optional[Callable[[nn.Module], Dict[str, float]]] = None
    info: Dict[str, Any] = field(default_factory=dict)


def image_layout(model: nn.Module, channels_last: bool) -> Tuple[nn.Module, Callable[[torch.Tensor], torch.Tensor], str]:
    """Lay a conv net and its input batches out as NHWC (``channels_last``) or NCHW.

    Returns the model (moved in place), the function that lays out an input batch, and the
    layout's name, which the manifest records (``task_info.memory_format``): the two layouts
    run different kernels, equal up to float rounding. NHWC is the faster one on CUDA (tensor
    cores) and on CPU (oneDNN; see results/bench/loop_cpu.md).
    """
    if not channels_last:
        return model, (lambda x: x), "contiguous"
    return (model.to(memory_format=torch.channels_last),
            (lambda x: x.contiguous(memory_format=torch.channels_last)), "channels_last")


def batch_generator(seed: int, *keys: int) -> torch.Generator:
    """A CPU generator seeded from the run seed and position keys (epoch, batch index, ...).

    Mixing with large odd constants keeps nearby keys from giving correlated streams.
    """
    mixed = seed & 0xFFFFFFFF
    for key in keys:
        mixed = (mixed * 0x9E3779B1 + key + 0x7F4A7C15) % (2**63 - 1)
    return torch.Generator().manual_seed(mixed)
