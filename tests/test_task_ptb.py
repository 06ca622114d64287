"""Penn Treebank: reader on fakes in Mikolov's text format, BPTT segments, carried state, AWD-LSTM."""

from __future__ import annotations

import copy
import csv
import math
import os
from pathlib import Path
from typing import List

import pytest
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf

from conftest import compose, interrupted_then_resumed, train
from experiments.data.ptb import batchify, fixed_segments, load_ptb, variable_segments
from experiments.errors import DataError
from experiments.models.lstm import LSTMLanguageModel, embedding_dropout, locked_dropout
from experiments.tasks.ptb import build


def write_ptb(root: Path, train_lines: List[str], valid_lines: List[str], test_lines: List[str]) -> Path:
    """Mikolov's layout: ``ptb.<split>.txt``, one sentence per line with a leading and a trailing space."""
    root.mkdir(parents=True, exist_ok=True)
    for split, lines in (("train", train_lines), ("valid", valid_lines), ("test", test_lines)):
        (root / f"ptb.{split}.txt").write_text("".join(f" {line} \n" for line in lines))
    return root


def random_corpus(root: Path, seed: int = 0) -> Path:
    g = torch.Generator().manual_seed(seed)
    vocab = [f"w{i}" for i in range(20)] + ["<unk>", "N"]

    def lines(n: int) -> List[str]:
        return [" ".join(vocab[j] for j in torch.randint(len(vocab), (int(torch.randint(3, 12, (1,), generator=g)),),
                                                         generator=g).tolist()) for _ in range(n)]

    return write_ptb(root, [" ".join(vocab)] + lines(60), lines(15), lines(15))


@pytest.fixture(scope="module")
def ptb_root(tmp_path_factory) -> Path:
    return random_corpus(tmp_path_factory.mktemp("ptb"))


def _build(root: Path, *overrides: str):
    cfg = OmegaConf.to_object(compose(["task=ptb", "scale=smoke", f"data.root={root}", *overrides]))
    torch.manual_seed(0)
    return build(cfg, torch.device("cpu"))


def test_reader_counts_words_and_eos_exactly(tmp_path):
    write_ptb(tmp_path, ["the cat sat", "the <unk> ran", "N cats"], ["the cat ran"], ["<unk> sat", "the"])
    corpus = load_ptb(tmp_path)
    assert corpus.words == ["the", "cat", "sat", "<eos>", "<unk>", "ran", "N", "cats"]
    assert corpus.train.tolist() == [0, 1, 2, 3, 0, 4, 5, 3, 6, 7, 3]
    assert corpus.valid.tolist() == [0, 1, 5, 3]
    assert corpus.test.tolist() == [4, 2, 3, 0, 3]
    assert (corpus.test == corpus.words.index("<eos>")).sum() == 2


def test_missing_empty_malformed_and_open_vocabulary_files_fail_clearly(tmp_path):
    with pytest.raises(DataError, match=r"Penn Treebank not found: looked for .*ptb\.train\.txt.*simple-examples"):
        load_ptb(tmp_path / "nowhere")
    write_ptb(tmp_path, ["a b"], ["a"], ["b"])
    (tmp_path / "ptb.valid.txt").write_text("")
    with pytest.raises(DataError, match=r"ptb\.valid\.txt holds no words"):
        load_ptb(tmp_path)
    (tmp_path / "ptb.valid.txt").write_bytes(b"PK\x03\x04\x00\x00\xff\xfe")
    with pytest.raises(DataError, match=r"ptb\.valid\.txt is not a readable PTB text file"):
        load_ptb(tmp_path)
    (tmp_path / "ptb.valid.txt").write_text(" a \n a zebra b \n")
    with pytest.raises(DataError, match=r"ptb\.valid\.txt line 2: word 'zebra' is not in the training vocabulary"):
        load_ptb(tmp_path)


def test_missing_data_stops_the_run_before_training(tmp_path, capsys):
    with pytest.raises(SystemExit) as stop:
        train(["task=ptb", "optim=sgd", "scale=smoke", f"data.root={tmp_path / 'none'}"], tmp_path / "run")
    assert stop.value.code == 2
    assert "Penn Treebank not found" in capsys.readouterr().err
    assert not (tmp_path / "run" / "manifest.json").exists()  # no half-record (experiments/main.py)


def test_batchify_makes_contiguous_streams():
    rows = batchify(torch.arange(23), 4)
    assert rows.tolist() == [[0, 1, 2, 3, 4], [5, 6, 7, 8, 9], [10, 11, 12, 13, 14], [15, 16, 17, 18, 19]]
    with pytest.raises(ValueError, match="too short for batch size"):
        batchify(torch.arange(5), 4)


def _covers_once(segments, columns: int) -> bool:
    return [i for s, n in segments for i in range(s, s + n)] == list(range(columns - 1))


def test_bptt_segments_cover_every_target_once_and_are_reproducible():
    assert fixed_segments(12, 5) == [(0, 5), (5, 5), (10, 1)]
    columns, bptt, count = 20_001, 70, 293
    draw = lambda key: variable_segments(columns, bptt, count, torch.Generator().manual_seed(key))  # noqa: E731
    a, b, other = draw(1), draw(1), draw(2)
    assert a == b and a != other and len(a) == len(other) == count
    assert _covers_once(a, columns) and _covers_once(other, columns)
    lengths = torch.tensor([n for _, n in a + other], dtype=torch.float64)
    assert 60 < lengths.mean() < 75 and lengths.max() <= bptt + 42
    assert ((lengths > 20) & (lengths < 50)).any()  # the bptt / 2 branch (5 % of the draws)


def test_task_epochs_tile_the_stream_and_resume_mid_epoch(ptb_root):
    task = _build(ptb_root)
    epoch0 = list(task.train_batches(0, 0))
    assert len(epoch0) == task.steps_per_epoch > 3
    inputs = torch.cat([x for x, _ in epoch0], dim=1)
    targets = torch.cat([y for _, y in epoch0], dim=1)
    assert torch.equal(inputs[:, 1:], targets[:, :-1])  # each segment continues the previous one
    assert [x.size(1) for x, _ in epoch0] != [x.size(1) for x, _ in task.train_batches(1, 0)]  # variable lengths
    for (x, y), (x2, y2) in zip(epoch0[2:], task.train_batches(0, 2)):
        assert torch.equal(x, x2) and torch.equal(y, y2)


def _full_sequence_nll(model, data: torch.Tensor) -> float:
    logits, _, _ = model(data[:, :-1], model.init_hidden(data.size(0)))
    return F.cross_entropy(logits.flatten(0, 1), data[:, 1:].flatten()).item()


def test_hidden_state_is_carried_across_segments(ptb_root):
    # One forward over each whole stream equals the segment-by-segment result only if the
    # state flows from each segment into the next (a reset would change every later prediction).
    task = _build(ptb_root)
    model = task.model.eval()
    corpus = load_ptb(ptb_root)
    with torch.no_grad():
        metrics = task.evaluate(model)
        # Validation in data.eval_batch_size (2) streams, test in task.test_batch_size (1).
        for split, stream, rows in (("val", corpus.valid, 2), ("test", corpus.test, 1)):
            whole = _full_sequence_nll(model, batchify(stream, rows))
            assert metrics[f"{split}_loss"] == pytest.approx(whole, rel=1e-5)
            assert metrics[f"{split}_ppl"] == pytest.approx(math.exp(whole), rel=1e-5)
        # Training: the carry returned by loss() feeds the next segment.
        carry, total, count = task.init_carry(), 0.0, 0
        batches = list(task.train_batches(0, 0))
        for batch in batches:
            value, carry = task.loss(model, batch, carry)
            total, count = total + value.item() * batch[1].numel(), count + batch[1].numel()
        inputs = torch.cat([batches[0][0][:, :1]] + [y for _, y in batches], dim=1)
        assert total / count == pytest.approx(_full_sequence_nll(model, inputs), rel=1e-5)


def test_evaluation_reads_a_fixed_window_or_with_limit_zero_the_whole_splits(ptb_root):
    from experiments.data.ptb import EOS
    from experiments.data.subset import stream_window

    corpus = load_ptb(ptb_root)
    eos = corpus.words.index(EOS)
    whole, limited = _build(ptb_root, "task.limit_eval_tokens=0"), _build(ptb_root, "task.limit_eval_tokens=40")
    assert "subset" not in whole.info
    limited.model.load_state_dict(whole.model.state_dict())
    for task, limit in ((whole, 0), (limited, 40)):
        model = task.model.eval()
        with torch.no_grad():
            metrics = task.evaluate(model)
            for split, stream, rows in (("val", corpus.valid, 2), ("test", corpus.test, 1)):
                window, start = stream_window(stream, limit, eos)
                assert len(window) == (limit or len(stream)) and (start == 0 or stream[start - 1] == eos)
                expected = _full_sequence_nll(model, batchify(window, rows))
                assert metrics[f"{split}_loss"] == pytest.approx(expected, rel=1e-5)
                if limit:
                    key = "valid" if split == "val" else split
                    assert limited.info["subset"][key] == {"used": 40, "of": len(stream), "start": start}


def test_awd_lstm_has_the_published_size_and_zaremba_small_its_shape():
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    awd = LSTMLanguageModel(10_000, 400, 1150, 3, tie_weights=True, dropout=0.4, dropouth=0.3, dropouti=0.65,
                            dropoute=0.1, wdrop=0.5)
    assert count(awd) == 24_221_600  # awd-lstm-lm prints "Model total parameters: 24221600"
    assert awd.decoder.weight is awd.encoder.weight
    assert [r.hidden_size for r in awd.rnns] == [1150, 1150, 400]
    small = LSTMLanguageModel(10_000, 200, 200, 2, init="lstm")
    assert count(small) == 4_653_200 and all(p.abs().max() <= 0.1 for p in small.parameters())


def test_weight_drop_masks_the_hidden_to_hidden_matrix_once_per_forward():
    torch.manual_seed(0)
    model = LSTMLanguageModel(50, 8, 64, 1, wdrop=0.5)
    x = torch.randint(50, (3, 12))
    logits, _, _ = model(x, model.init_hidden(3))
    logits.sum().backward()
    # Dropped entries of W_hh get exactly zero gradient (one mask for every time step and
    # sequence of the batch); about half of them are dropped. W_ih is not dropped.
    assert 0.4 < (model.rnns[0].weight_hh_l0.grad == 0).float().mean() < 0.6
    assert (model.rnns[0].weight_ih_l0.grad == 0).float().mean() < 0.1
    copy.deepcopy(model)  # Polyak averaging copies the model after training steps
    model.eval()  # no DropConnect in evaluation: the plain LSTM on the raw weights
    with torch.no_grad(), torch.backends.cudnn.flags(enabled=False):
        emb = model.encoder(x)
        plain = torch.nn.LSTM(8, 64, batch_first=True)
        plain.load_state_dict(model.rnns[0].state_dict())
        torch.testing.assert_close(model(x, model.init_hidden(3))[0], model.decoder(plain(emb)[0]))


def test_embedding_dropout_drops_whole_words_and_locked_dropout_whole_sequences():
    torch.manual_seed(0)
    model = LSTMLanguageModel(40, 6, 6, 1, dropoute=0.5)
    x = torch.arange(40).repeat(2, 1)  # every word twice (two rows)
    emb = model.encoder.weight
    out = embedding_dropout(model.encoder, x, 0.5, training=True)
    kept = out[0].abs().sum(1) > 0
    torch.testing.assert_close(out[0][kept], 2 * emb[kept])
    assert torch.equal(out[0], out[1]) and 0.2 < kept.float().mean() < 0.8
    h = locked_dropout(torch.ones(4, 10, 32), 0.5, training=True)
    assert torch.equal(h, h[:, :1].expand_as(h))  # one mask per sequence, shared over time


def _rows(path: Path) -> list:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.mark.parametrize("optim", ["sgd", "lookahead_sgd", "lookahead_adam", "polyak_sgd"])
def test_optimizers_train_through_the_loop(optim, ptb_root, tmp_path):
    m = train(["task=ptb", f"optim={optim}", "scale=smoke", f"data.root={ptb_root}"], tmp_path)
    assert m["status"] == "completed" and m["steps"] == 24 and m["target_metric"] == "val_ppl"  # scale/smoke.yaml
    final = m["final"]
    assert final["val_ppl"] == pytest.approx(math.exp(final["val_loss"])) and 1 < final["test_ppl"] < 1e4
    columns = _rows(tmp_path / "metrics.csv")[-1].keys()
    assert {"train_loss", "val_ppl", "test_ppl"} <= set(columns)
    if optim.startswith("lookahead"):
        assert {"val_ppl_slow", "val_ppl_fast"} <= set(columns)


def test_resume_mid_epoch_restores_the_carried_state(ptb_root, tmp_path, monkeypatch):
    args = ["task=ptb", "optim=lookahead_sgd", "scale=smoke", f"data.root={ptb_root}", "optim.lookahead.k=3",
            "trainer.max_steps=8", "trainer.log_every=1", "trainer.checkpoint_every=1"]
    whole = train(args, tmp_path / "whole")
    resumed = interrupted_then_resumed(args, tmp_path / "cut", monkeypatch)
    assert resumed["resumed"] and resumed["final"] == whole["final"]
    strip = lambda rows: [{k: v for k, v in r.items() if k != "time_s"} for r in rows]  # noqa: E731
    assert strip(_rows(tmp_path / "whole" / "metrics.csv")) == strip(_rows(tmp_path / "cut" / "metrics.csv"))


def test_loss_falls_on_a_repeated_tiny_corpus(tmp_path):
    sentence = "a b c d e f g h"
    root = write_ptb(tmp_path / "data", [sentence] * 40, [sentence] * 4, [sentence] * 4)
    train(["task=ptb", "optim=adam", "scale=smoke", f"data.root={root}", "optim.lr=0.05", "trainer.max_steps=30",
           "trainer.log_every=5", "task.dropouti=0", "task.dropoute=0", "task.wdrop=0"], tmp_path / "run")
    losses = [float(r["train_loss"]) for r in _rows(tmp_path / "run" / "metrics.csv") if r.get("train_loss")]
    assert len(losses) == 6 and losses[-1] < 0.6 * losses[0]


@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get("LOOKAHEAD_DATA"), reason="LOOKAHEAD_DATA (holding ptb/) is not set")
def test_real_ptb_has_the_published_counts():
    corpus = load_ptb(Path(os.environ["LOOKAHEAD_DATA"]) / "ptb")
    assert (len(corpus.train), len(corpus.valid), len(corpus.test)) == (929_589, 73_760, 82_430)
    assert len(corpus.words) == 10_000 and {"<unk>", "<eos>", "N"} <= set(corpus.words)


def test_bf16_runs_the_recurrence_in_fp32_and_the_decoder_in_bf16(ptb_root, tmp_path):
    # oneDNN's bf16 LSTM exists only with AVX512_BF16/AMX; the model keeps nn.LSTM in fp32 under
    # autocast so that trainer.precision=bf16 runs on every CPU (experiments/models/lstm.py).
    task = _build(ptb_root)
    seen = []
    for rnn in task.model.rnns:
        rnn.register_forward_hook(lambda mod, inp, out: seen.append((inp[0].dtype, out[0].dtype, inp[1][0].dtype)))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss, carry = task.loss(task.model, next(task.train_batches(0, 0)), task.init_carry())
        logits, _, _ = task.model(next(task.train_batches(0, 0))[0], task.init_carry())
    loss.backward()
    assert seen and set(seen) == {(torch.float32, torch.float32, torch.float32)}
    assert logits.dtype == torch.bfloat16 and carry[0][0].dtype == torch.float32
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in task.model.parameters())
    m = train(["task=ptb", "optim=lookahead_sgd", "scale=smoke", f"data.root={ptb_root}", "trainer.precision=bf16",
               "optim.lookahead.k=2"], tmp_path)
    assert m["status"] == "completed" and math.isfinite(m["final"]["val_ppl"]) and "val_ppl_slow" in m["final"]


def test_bf16_step_runs_on_a_cpu_without_native_bf16():
    # ONEDNN_MAX_CPU_ISA=AVX2 makes oneDNN behave as on an AVX2-only CPU (the AMD EPYC machines),
    # where a bf16 nn.LSTM fails with "could not create a primitive descriptor".
    import subprocess
    import sys

    code = ("import torch; from experiments.models.lstm import LSTMLanguageModel as M; torch.manual_seed(0); "
            "m = M(50, 8, 8, 2, wdrop=0.5); x = torch.randint(50, (3, 7)); "
            "ctx = torch.autocast('cpu', dtype=torch.bfloat16)\n"
            "with ctx: out = m(x, m.init_hidden(3))[0]\n"
            "out.float().sum().backward(); print(out.dtype)")
    env = {**os.environ, "ONEDNN_MAX_CPU_ISA": "AVX2", "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "torch.bfloat16"
