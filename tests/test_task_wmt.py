"""WMT14 / Multi30k translation: parallel reader, BPE batching, decoding, BLEU, the task and data preparation."""

from __future__ import annotations

import csv
import importlib.util
import os
import random
from pathlib import Path

import pytest
import sacrebleu
import torch

from conftest import train
from experiments.data.batching import collate, token_batches
from experiments.data.bleu import bleu_signature, corpus_bleu
from experiments.data.parallel import read_parallel
from experiments.data.spm import BOS, EOS, PAD, Encoded
from experiments.errors import DataError
from experiments.models.transformer import Transformer, beam_search, greedy
from experiments.tasks.base import batch_generator

ROOT = Path(__file__).resolve().parents[1]
EN = "a the man woman dog cat red blue runs sits on in park table small big street water".split()
DE = "ein der mann frau hund katze rot blau läuft sitzt auf im park tisch klein groß straße wasser".split()


def write_parallel(root: Path, split: str, n: int, seed: int = 0) -> None:
    """``n`` aligned lines: the German side translates the English one word by word."""
    rng = random.Random(seed)
    rows = [[rng.randrange(len(EN)) for _ in range(rng.randint(2, 10))] for _ in range(n)]
    root.mkdir(parents=True, exist_ok=True)
    (root / f"{split}.en").write_text("".join(" ".join(EN[i] for i in r) + " .\n" for r in rows), encoding="utf-8")
    (root / f"{split}.de").write_text("".join(" ".join(DE[i] for i in r) + " .\n" for r in rows), encoding="utf-8")


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    root = tmp_path / "wmt14"
    write_parallel(root, "train", 120, seed=0)
    write_parallel(root, "newstest2014", 12, seed=1)
    return root


def test_parallel_reader_keeps_lines(tmp_path: Path) -> None:
    (tmp_path / "dev.en").write_text("Two  men , one dog.\n\nlast line without newline", encoding="utf-8")
    (tmp_path / "dev.de").write_text("Zwei Männer, ein Hund.\n\nletzte Zeile\n", encoding="utf-8")
    src, tgt = read_parallel(tmp_path, "dev", "en", "de")
    assert src == ["Two  men , one dog.", "", "last line without newline"]
    assert tgt == ["Zwei Männer, ein Hund.", "", "letzte Zeile"]


def test_parallel_reader_errors(tmp_path: Path) -> None:
    (tmp_path / "train.en").write_text("a\nb\nc\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"train\.de"):
        read_parallel(tmp_path, "train", "en", "de")
    (tmp_path / "train.de").write_text("x\ny\n", encoding="utf-8")
    with pytest.raises(DataError) as err:
        read_parallel(tmp_path, "train", "en", "de")
    message = str(err.value)
    assert "train.en has 3 lines" in message and "train.de has 2 lines" in message


def test_bleu_equals_sacrebleu() -> None:
    hyps = ["Ein Mann fährt Fahrrad auf der Straße.", "Zwei Hunde spielen im Schnee", "Eine Frau liest."]
    refs = ["Ein Mann fährt auf der Straße Fahrrad.", "Zwei Hunde spielen im Schnee.", "Eine Frau liest ein Buch."]
    score, signature = corpus_bleu(hyps, refs)
    assert score == pytest.approx(sacrebleu.corpus_bleu(hyps, [refs]).score, abs=1e-12)
    assert 0 < score < 100
    assert corpus_bleu(refs, refs)[0] == pytest.approx(100.0)
    assert signature == bleu_signature() and "tok:13a" in signature and sacrebleu.__version__ in signature
    with pytest.raises(ValueError, match="2 hypotheses but 3 references"):
        corpus_bleu(hyps[:2], refs)


def test_token_batches_budget_coverage_and_determinism() -> None:
    g = torch.Generator().manual_seed(0)
    src, tgt = torch.randint(1, 40, (500,), generator=g), torch.randint(1, 40, (500,), generator=g)
    epoch = [token_batches(src, tgt, 200, batch_generator(7, e)) for e in (0, 1)]
    for batches in epoch:
        assert all(len(b) * int(torch.maximum(src[b], tgt[b]).max() + 1) <= 200 for b in batches)
        assert torch.equal(torch.sort(torch.cat(batches)).values, torch.arange(500))
    assert len(epoch[0]) == len(epoch[1])  # constant steps per epoch
    again = token_batches(src, tgt, 200, batch_generator(7, 0))
    assert all(torch.equal(a, b) for a, b in zip(epoch[0], again))
    assert not all(torch.equal(a, b) for a, b in zip(epoch[0], epoch[1]))
    with pytest.raises(ValueError, match="max_tokens=30"):
        token_batches(src, tgt, 30)


def test_collate_adds_bos_eos_and_padding() -> None:
    store = Encoded(torch.tensor([5, 6, 7, 8], dtype=torch.int32), torch.tensor([0, 3, 4]))
    x, y_in, y_out = collate(store, store, [1, 0], torch.device("cpu"))
    assert x.tolist() == [[8, EOS, PAD, PAD], [5, 6, 7, EOS]]
    assert y_in.tolist() == [[BOS, 8, PAD, PAD], [BOS, 5, 6, 7]]
    assert y_out.tolist() == x.tolist()
    assert store.select(torch.tensor([1, 0]))[1].tolist() == [5, 6, 7]


def _model(vocab: int = 24) -> Transformer:
    torch.manual_seed(0)
    return Transformer(vocab, d_model=32, num_layers=2, num_heads=4, ff_size=64).eval()


def _reversal_batch(n: int, g: torch.Generator):
    """Sources of 2-8 tokens; targets are the reversed sources (a toy translation task)."""
    x, y_in, y_out = (torch.full((n, 10), PAD) for _ in range(3))
    for i, length in enumerate(torch.randint(2, 9, (n,), generator=g).tolist()):
        s = torch.randint(4, 24, (length,), generator=g)
        x[i, :length], x[i, length] = s, EOS
        y_in[i, 0], y_in[i, 1 : length + 1] = BOS, s.flip(0)
        y_out[i, :length], y_out[i, length] = s.flip(0), EOS
    return x, y_in, y_out


@pytest.fixture(scope="module")
def half_trained() -> Transformer:
    """A few steps on token reversal: outputs depend on the source and some end with eos."""
    model = _model().train()
    opt = torch.optim.Adam(model.parameters(), 3e-3)
    g = torch.Generator().manual_seed(0)
    for _ in range(30):
        x, y_in, y_out = _reversal_batch(32, g)
        loss = torch.nn.functional.cross_entropy(model(x, y_in).flatten(0, 1), y_out.flatten(), ignore_index=PAD)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


def test_cached_decoding_equals_teacher_forcing() -> None:
    model = _model()
    src = torch.randint(4, 24, (3, 7))
    src[1, 4:] = PAD
    tgt = torch.randint(4, 24, (3, 6))
    tgt[:, 0] = BOS
    with torch.no_grad():
        full = model(src, tgt)
        memory, pad = model.encode(src)
        cache = model.start_cache(memory, pad)
        steps = torch.stack([model.step(tgt[:, t], cache, t) for t in range(tgt.size(1))], 1)
    torch.testing.assert_close(steps, full, rtol=1e-4, atol=1e-4)


def test_beam_one_equals_greedy(half_trained: Transformer) -> None:
    src, _, _ = _reversal_batch(24, torch.Generator().manual_seed(1))
    g = greedy(half_trained, src, 6, BOS, EOS)
    assert g == beam_search(half_trained, src, 1, 6, 0.6, BOS, EOS)
    assert len({tuple(h) for h in g}) > 1 and any(len(h) < 6 for h in g) and any(len(h) == 6 for h in g)
    wide = beam_search(half_trained, src, 4, 6, 0.6, BOS, EOS)
    assert len(wide) == 24 and all(EOS not in h and len(h) <= 6 for h in wide) and wide != g


@pytest.mark.parametrize("optim", ["adam", "lookahead_adam"])
def test_smoke_training(corpus: Path, tmp_path: Path, optim: str) -> None:
    run = tmp_path / "run"
    manifest = train(["task=wmt14", f"optim={optim}", "scale=smoke", f"data.root={corpus}",
                      f"task.cache_dir={tmp_path / 'cache'}"], run)
    assert manifest["status"] == "completed"
    rows = list(csv.DictReader(open(run / "metrics.csv")))
    columns = set(rows[0])
    assert {"train_loss", "test_loss", "test_ppl", "test_bleu"} <= columns
    if optim.startswith("lookahead"):
        assert {"test_bleu_slow", "test_bleu_fast"} <= columns
    info = manifest["task_info"]
    assert info["bleu_signature"].startswith("nrefs:1|") and info["bleu_sentences"] == 12
    assert info["bleu_decode"].startswith("beam 2") and len(list((tmp_path / "cache").glob("*.model"))) == 1


def test_limit_eval_keeps_a_fixed_aligned_subset_of_sentences(corpus: Path, tmp_path: Path) -> None:
    from omegaconf import OmegaConf

    from conftest import compose
    from experiments.data.spm import decode
    from experiments.data.subset import subset_index
    from experiments.data.translation import load_corpus
    from experiments.tasks import build_task

    def task(*extra: str):
        cfg = OmegaConf.to_object(compose(["task=wmt14", "scale=smoke", f"data.root={corpus}",
                                           f"task.cache_dir={tmp_path / 'cache'}", *extra]))
        torch.manual_seed(0)
        return cfg, build_task(cfg, torch.device("cpu"))

    cfg, limited = task("task.limit_eval=5")
    _, reseeded = task("task.limit_eval=5", "seed=3")
    _, whole = task("task.limit_eval=0")
    assert limited.info["subset"]["test"] == {"used": 5, "of": 12} and "subset" not in whole.info
    model = limited.model.eval()
    with torch.no_grad():
        scores = [t.evaluate(model) for t in (limited, reseeded, whole)]
    assert scores[0] == scores[1] and scores[0]["test_loss"] != scores[2]["test_loss"]  # fixed, and a subset
    # The selected sentences keep source, target and reference aligned.
    data = load_corpus(corpus, cfg.task)
    split = data.test.select(subset_index(len(data.test.refs), 5))
    assert decode(data.sp, [split.tgt[i] for i in range(5)]) == split.refs
    assert set(split.refs) <= set(data.test.refs) and len(split.refs) == 5


def test_missing_training_data_is_a_data_error(tmp_path: Path) -> None:
    from conftest import compose
    from omegaconf import OmegaConf

    from experiments.tasks import build_task

    write_parallel(tmp_path / "wmt14", "newstest2014", 5)
    cfg = OmegaConf.to_object(compose(["task=wmt14", "scale=smoke", f"data.root={tmp_path / 'wmt14'}"]))
    with pytest.raises(DataError, match="prepare_wmt14.py"):
        build_task(cfg, torch.device("cpu"))


def test_prepare_wmt14_on_a_tiny_corpus(tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location("prepare_wmt14", ROOT / "scripts" / "data" / "prepare_wmt14.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    raw, out = tmp_path / "raw", tmp_path / "out"
    write_parallel(raw, "europarl-v7.de-en", 60, seed=0)
    write_parallel(raw, "commoncrawl.de-en", 40, seed=2)
    write_parallel(raw, "newstest2014", 10, seed=3)
    assert script.main([str(raw), str(out), "--vocab-size", "60"]) == 0
    assert (out / "newstest2014.de").read_bytes() == (raw / "newstest2014.de").read_bytes()
    blob = torch.load(out / "train.en-de.pt", weights_only=True)
    assert blob["corpora"] == ["commoncrawl.de-en", "europarl-v7.de-en"] and len(blob["src"]["offsets"]) == 101
    manifest = train(["task=wmt14", "optim=adam", "scale=smoke", f"data.root={out}"], tmp_path / "run")
    assert manifest["status"] == "completed" and manifest["task_info"]["spm_model"] == "spm.model"
    assert script.main([str(tmp_path / "empty"), str(out)]) == 2


@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get("LOOKAHEAD_DATA"), reason="needs LOOKAHEAD_DATA with wmt14/newstest2014.*")
def test_newstest2014_copy_baseline_and_decoding_path() -> None:
    from experiments.data.spm import encode, load_model, train_spm
    from experiments.data.translation import translate
    from experiments.tasks.wmt_config import WMTTaskConfig

    src, ref = read_parallel(Path(os.environ["LOOKAHEAD_DATA"]) / "wmt14", "newstest2014", "en", "de")
    assert len(src) == len(ref) == 3003
    score, signature = corpus_bleu(src, ref)  # copying the English source as the "translation"
    assert score == pytest.approx(sacrebleu.corpus_bleu(src, [ref]).score, abs=1e-12)
    assert 0.5 < score < 10 and "tok:13a" in signature
    sp = load_model(train_spm(src[:500] + ref[:500], 500))
    hyps = translate(_model(len(sp)), sp, encode(sp, src), WMTTaskConfig(name="wmt14", dataset="wmt14", beam_size=2),
                     "beam", 8, torch.device("cpu"), limit=8)
    assert len(hyps) == 8 and all(isinstance(h, str) for h in hyps)
