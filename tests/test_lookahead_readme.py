"""The README's FSDP2 + DCP example, run as written on two forked CPU processes (gloo).

The test supplies the names the example leaves to the reader (``make_model``, ``train``,
``evaluate``, ``ckpt_dir``) and checks that the resumed optimizer holds what was saved.
"""

from __future__ import annotations

import itertools
import re
from pathlib import Path

import torch
from torch.testing import assert_close

from lookahead import Lookahead
from test_lookahead_ddp import batch, spawn
from test_lookahead_fsdp import make_model, snapshot

README = Path(__file__).resolve().parents[1] / "README.md"
MARKER = "<!-- tested by tests/test_lookahead_readme.py -->"


def example() -> str:
    text = README.read_text()
    assert text.count(MARKER) == 1, "the README marks one tested example"
    match = re.match(r"\s*```python\n(.*?)\n```", text.split(MARKER, 1)[1], re.S)
    assert match, "the marker precedes a ```python block"
    return match.group(1)


def worker(rank, ckpt_dir):
    seeds, saved, evaluated = itertools.count(), [], []

    def train(model, opt, steps):
        for t in range(steps):
            opt.zero_grad()
            model(batch(rank, t)).square().mean().backward()
            opt.step()
        saved.append(snapshot(model, opt))

    def evaluate(model):
        evaluated.append([p.to_local().clone() for p in model.parameters()])

    namespace = {
        "torch": torch, "Lookahead": Lookahead, "make_model": lambda: make_model(seed=next(seeds)),
        "train": train, "evaluate": evaluate, "ckpt_dir": ckpt_dir,
    }
    exec(compile(example(), str(README), "exec"), namespace)
    model, opt = namespace["model"], namespace["opt"]
    assert opt.fast_steps == 7 and next(seeds) == 2  # resumed into a second, fresh model
    assert_close(snapshot(model, opt), saved[0], rtol=0, atol=0)
    slow = [opt.state[p]["slow_param"].to_local() for p in model.parameters()]
    assert_close(evaluated[0], slow, rtol=0, atol=0)


def test_readme_fsdp2_dcp_example_runs(tmp_path):
    spawn(worker, str(tmp_path / "ckpt"))
