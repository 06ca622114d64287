"""The token tasks' step without its overheads: batched collation, 16-bit dropout masks on CPU,
and a malloc that keeps freed memory (results/bench/token_steps_cpu.md)."""

from __future__ import annotations

import csv
import json
import platform
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.nn.utils.rnn import pad_sequence

from conftest import interrupted_then_resumed, train
from experiments.data.batching import collate
from experiments.data.spm import BOS, EOS, PAD, Encoded
from experiments.models.transformer import BitsDropout, Transformer, drop_level, keep_mask
from experiments.train import keep_freed_memory
from test_task_wmt import write_parallel

ROOT = Path(__file__).resolve().parents[1]


def _collate_per_sentence(src: Encoded, tgt, index):
    """The collation before batching it: one concatenation per sentence, then pad_sequence."""
    index = [int(i) for i in index]
    eos, bos = torch.tensor([EOS]), torch.tensor([BOS])
    x = pad_sequence([torch.cat([src[i].long(), eos]) for i in index], batch_first=True, padding_value=PAD)
    if tgt is None:
        return x, None, None
    ys = [tgt[i].long() for i in index]
    y_in = pad_sequence([torch.cat([bos, y]) for y in ys], batch_first=True, padding_value=PAD)
    y_out = pad_sequence([torch.cat([y, eos]) for y in ys], batch_first=True, padding_value=PAD)
    return x, y_in, y_out


def _store(n: int, g: torch.Generator, max_len: int = 12) -> Encoded:
    lengths = torch.randint(0, max_len, (n,), generator=g)  # empty sentences included
    offsets = torch.cat([torch.zeros(1, dtype=torch.long), lengths.cumsum(0)])
    return Encoded(torch.randint(4, 500, (int(offsets[-1]),), generator=g, dtype=torch.int32), offsets)


def test_batched_collate_equals_per_sentence_padding():
    g = torch.Generator().manual_seed(0)
    src, tgt = _store(200, g), _store(200, g)
    for _ in range(30):
        index = torch.randperm(200, generator=g)[: int(torch.randint(1, 60, (1,), generator=g))]
        for idx in (index, index.tolist()):
            got, want = collate(src, tgt, idx, torch.device("cpu")), _collate_per_sentence(src, tgt, idx)
            assert all(torch.equal(a, b) and a.dtype == b.dtype == torch.long for a, b in zip(got, want))
        x, none, _ = collate(src, None, index, torch.device("cpu"))
        assert torch.equal(x, _collate_per_sentence(src, None, index)[0]) and none is None
    empty = Encoded(torch.tensor([7], dtype=torch.int32), torch.tensor([0, 0, 0, 1]))
    x, y_in, y_out = collate(empty, empty, [0, 1], torch.device("cpu"))  # only empty sentences
    assert x.tolist() == [[EOS], [EOS]] and y_in.tolist() == [[BOS], [BOS]] and y_out.tolist() == [[EOS], [EOS]]


@pytest.mark.parametrize("p", [0.1, 0.3, 0.5])
def test_keep_mask_drops_with_the_quantised_probability_reproducibly(p):
    q = drop_level(p) / 2**16
    assert abs(q - p) <= 2**-17
    torch.manual_seed(3)
    m = keep_mask((500, 400), p)
    assert m.dtype == torch.bool and m.shape == (500, 400)
    n = m.numel()
    assert abs((1 - m.float().mean().item()) - q) < 5 * (q * (1 - q) / n) ** 0.5
    torch.manual_seed(3)
    assert torch.equal(keep_mask((500, 400), p), m)  # the default generator: reproducible from the seed
    assert not torch.equal(keep_mask((500, 400), p), m)
    g = torch.Generator().manual_seed(3)
    odd = keep_mask((7, 3), p, torch.float32, generator=g)  # numel not a multiple of 4
    assert odd.dtype == torch.float32 and set(odd.unique().tolist()) <= {0.0, 1.0}
    assert keep_mask((5,), 0.0).all() and not keep_mask((5,), 1.0).any()


def test_bits_dropout_scales_kept_units_and_masks_the_gradient():
    drop = BitsDropout(0.25)
    q = drop_level(0.25) / 2**16
    x = torch.randn(64, 33, requires_grad=True)
    torch.manual_seed(0)
    y = drop(x)
    torch.manual_seed(0)
    mask = keep_mask(x.shape, 0.25, torch.float32)
    assert torch.equal(y, x * (mask * (1 / (1 - q))))
    y.backward(torch.ones_like(y))
    assert torch.equal(x.grad, mask * (1 / (1 - q)))
    drop.eval()
    assert drop(x) is x or torch.equal(drop(x), x)
    assert torch.equal(BitsDropout(1.0)(x), torch.zeros_like(x))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert drop.train()(x.detach().bfloat16()).dtype == torch.bfloat16


def test_transformer_masks_are_a_choice_and_leave_evaluation_and_parameters_alone():
    torch.manual_seed(0)
    bits = Transformer(40, d_model=32, num_layers=2, num_heads=4, ff_size=64)
    torch.manual_seed(0)
    torch_masks = Transformer(40, d_model=32, num_layers=2, num_heads=4, ff_size=64, dropout_masks="bernoulli")
    dropouts = [m for m in bits.modules() if isinstance(m, nn.Dropout)]
    assert len(dropouts) == 1 + 2 * 3 + 2 * 4 and all(type(m) is BitsDropout for m in dropouts)
    assert all(type(m) is nn.Dropout for m in torch_masks.modules() if isinstance(m, nn.Dropout))
    assert bits.state_dict().keys() == torch_masks.state_dict().keys()
    assert all(torch.equal(a, b) for a, b in zip(bits.state_dict().values(), torch_masks.state_dict().values()))
    src, tgt = torch.randint(4, 40, (3, 7)), torch.randint(4, 40, (3, 5))
    with torch.no_grad():
        assert torch.equal(bits.eval()(src, tgt), torch_masks.eval()(src, tgt))
    with pytest.raises(ValueError, match="dropout_masks"):
        Transformer(40, d_model=32, num_layers=1, num_heads=4, ff_size=64, dropout_masks="philox")


def _rows(path: Path) -> list:
    with open(path, newline="") as f:
        return [{k: v for k, v in r.items() if k != "time_s"} for r in csv.DictReader(f)]


def test_translation_with_bits_dropout_records_it_and_resumes_bit_identically(tmp_path, monkeypatch):
    root = tmp_path / "multi30k"
    write_parallel(root, "train", 120, seed=0)
    write_parallel(root, "newstest2014", 12, seed=1)
    args = ["task=wmt14", "optim=lookahead_adam", "scale=smoke", f"data.root={root}",
            f"task.cache_dir={tmp_path / 'cache'}", "trainer.max_steps=8", "trainer.log_every=1",
            "trainer.checkpoint_every=1", "task.dropout=0.3"]
    whole = train(args, tmp_path / "whole")
    assert whole["task_info"]["dropout_masks"] == "bits"
    assert whole["task_info"]["heap_kept"] == (platform.system() == "Linux" and platform.libc_ver()[0] == "glibc")
    resumed = interrupted_then_resumed(args, tmp_path / "cut", monkeypatch)
    assert resumed["resumed"] and resumed["final"] == whole["final"]
    assert _rows(tmp_path / "whole" / "metrics.csv") == _rows(tmp_path / "cut" / "metrics.csv")


FAULTS = """
import json, resource, statistics, sys, torch
from experiments.train import keep_freed_memory
kept = keep_freed_memory() if sys.argv[1] == "keep" else False
def faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
per_iteration = []
for _ in range(16):  # a step's pattern: large buffers allocated, written and freed
    start = faults()
    a = torch.empty(12_000_000).fill_(1.0); b = a * 2; del a, b
    per_iteration.append(faults() - start)
print(json.dumps({"kept": kept, "faults": statistics.median(per_iteration[4:])}))
"""


@pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc's mallopt")
def test_keep_freed_memory_stops_the_page_faults_of_large_buffers():
    def run(mode: str) -> dict:
        out = subprocess.run([sys.executable, "-c", FAULTS, mode], cwd=ROOT, capture_output=True, text=True,
                             check=True, env={"PATH": "", "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)})
        return json.loads(out.stdout)

    plain, kept = run("plain"), run("keep")
    # Two 48 MB buffers per iteration: about 23k fresh pages from mmap every time; with the heap
    # kept, none in a typical iteration (the heap still grows now and then to the pattern's peak).
    assert not plain["kept"] and plain["faults"] > 10_000
    assert kept["kept"] and kept["faults"] < 500
    assert keep_freed_memory()  # and calling it again is harmless
