"""ImageNet: ImageFolder reader on fake JPEG/PNG trees, deterministic sharded batches, the val
sorting script on a fake devkit, and a few training steps through the real loop."""

from __future__ import annotations

import importlib.util
import _socket
import os
import shutil
import socket
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from PIL import Image

from conftest import compose, train
from experiments import distributed
from experiments.data.imagenet import EpochBatches, ImageList, eval_batches, load_imagenet, train_transform
from experiments.errors import DataError

ROOT = Path(__file__).resolve().parents[1]
WNIDS = [f"n0{1000000 + 7 * i}" for i in range(10)]  # ten fake wnids, n01000000 ...


def _image(path: Path, rng: np.random.Generator, mode: str = "RGB", size=(40, 30)) -> None:
    shape = (size[1], size[0]) if mode == "L" else (size[1], size[0], 3)
    img = Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), "L" if mode == "L" else "RGB")
    img = img.convert(mode) if mode not in ("L", "RGB") else img
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)


def write_imagefolder(root: Path, n_train: int = 3, n_val: int = 2, seed: int = 0) -> Path:
    """``root/{train,val}/<wnid>/*``: JPEGs of several sizes, one greyscale JPEG, one CMYK JPEG,
    one palette PNG and one file that is not an image (ignored by extension)."""
    rng = np.random.default_rng(seed)
    for split, n in (("train", n_train), ("val", n_val)):
        for c, wnid in enumerate(WNIDS):
            for i in range(n):
                _image(root / split / wnid / f"{wnid}_{i}.JPEG", rng, size=(40 + 7 * i, 30 + 5 * c))
    _image(root / "train" / WNIDS[1] / "grey.JPEG", rng, "L", (33, 47))
    _image(root / "train" / WNIDS[2] / "cmyk.jpg", rng, "CMYK")
    _image(root / "val" / WNIDS[3] / "palette.png", rng, "P")
    (root / "train" / WNIDS[0] / "notes.txt").write_text("not an image")
    return root


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> Path:
    return write_imagefolder(tmp_path_factory.mktemp("imagenet"))


def test_reader_scans_the_tree_and_converts_every_image_to_rgb(tree):
    data = load_imagenet(tree, image_size=24, resize_size=28)
    assert data.classes == sorted(WNIDS)
    assert len(data.train) == 10 * 3 + 2 and len(data.val) == 10 * 2 + 1
    labels = {Path(p).name: y for p, y in data.train.samples}
    assert labels["grey.JPEG"] == 1 and labels["cmyk.jpg"] == 2 and "notes.txt" not in labels
    for name in ("grey.JPEG", "cmyk.jpg"):
        i = next(j for j, (p, _) in enumerate(data.train.samples) if p.endswith(name))
        x, y = data.train[(i, 123)]
        assert x.shape == (3, 24, 24) and x.dtype == torch.uint8 and y == labels[name]
        assert torch.equal(x, data.train[(i, 123)][0])  # same seed, same crop and flip
    grey = data.train[(next(j for j, (p, _) in enumerate(data.train.samples) if p.endswith("grey.JPEG")), 5)][0]
    assert torch.equal(grey[0], grey[1]) and torch.equal(grey[1], grey[2])
    x, _ = data.val[(len(data.val) - 1, -1)]
    assert x.shape == (3, 24, 24)


def test_limits_pick_a_fixed_stratified_subset_and_zero_keeps_the_sorted_list(tree):
    whole = load_imagenet(tree, 24, 28)
    assert load_imagenet(tree, 24, 28, limit_train=0, limit_val=0).val.samples == whole.val.samples
    limited = load_imagenet(tree, 24, 28, limit_train=20, limit_val=10)
    assert sorted(y for _, y in limited.val.samples) == list(range(10))  # one per class (class-sorted tree)
    counts = torch.bincount(torch.tensor([y for _, y in limited.train.samples]), minlength=10)
    sizes = torch.bincount(torch.tensor([y for _, y in whole.train.samples]), minlength=10)
    assert ((counts - 20 * sizes / len(whole.train)).abs() <= 1).all()  # each class its share
    assert set(limited.train.samples) <= set(whole.train.samples) and len(set(limited.train.samples)) == 20
    assert (limited.train_total, limited.val_total) == (len(whole.train), len(whole.val))


def test_val_labels_follow_the_train_classes(tmp_path):
    write_imagefolder(tmp_path, n_train=1, n_val=1)
    for wnid in WNIDS[:4]:  # a val/ with fewer classes keeps train/'s indices
        for f in (tmp_path / "val" / wnid).iterdir():
            f.unlink()
        (tmp_path / "val" / wnid).rmdir()
    data = load_imagenet(tmp_path, 16, 16)
    assert sorted({y for _, y in data.val.samples}) == list(range(4, 10))
    (tmp_path / "val" / "n09999999").mkdir()
    with pytest.raises(DataError, match="class folders that train/ lacks.*n09999999"):
        load_imagenet(tmp_path, 16, 16)


def test_missing_or_flat_folders_say_where_and_how(tmp_path):
    with pytest.raises(DataError, match=r"looked for .*nowhere.train.*cannot be downloaded automatically.*"
                                        r"scripts/data/prepare_imagenet\.py"):
        load_imagenet(tmp_path / "nowhere", 32, 36)
    flat = write_imagefolder(tmp_path / "flat", n_train=1, n_val=1)
    shutil.rmtree(flat / "val")
    _image(flat / "val" / "ILSVRC2012_val_00000001.JPEG", np.random.default_rng(0))
    with pytest.raises(DataError, match="no class folders.*prepare_imagenet"):
        load_imagenet(flat, 32, 36)


def test_num_classes_and_model_are_checked(tree):
    from experiments.tasks.imagenet import build

    cfg = compose(["task=imagenet", "scale=smoke", f"data.root={tree}", "task.num_classes=1000"])
    with pytest.raises(DataError, match="10 class folders but task.num_classes=1000"):
        build(OmegaConf.to_object(cfg), torch.device("cpu"))
    cfg = compose(["task=imagenet", "scale=smoke", f"data.root={tree}", "task.model=resnet51"])
    with pytest.raises(ValueError, match="Unknown task.model: 'resnet51'"):
        build(OmegaConf.to_object(cfg), torch.device("cpu"))


def test_batches_are_a_function_of_seed_epoch_and_index(tree, monkeypatch):
    plan = EpochBatches(n=32, size=8, seed=3)
    whole = list(plan)
    assert len(whole) == 4 and sorted(i for b in whole for i, _ in b) == list(range(32))
    plan.start = 2
    assert list(plan) == whole[2:]  # resume mid-epoch
    plan.epoch, plan.start = 1, 0
    assert list(plan) != whole
    assert list(EpochBatches(n=35, size=8, seed=3)) != whole and len(EpochBatches(35, 8, 3)) == 4  # drop last
    # Two ranks take positions 0::2 and 1::2 of the same global batch, with the same seeds.
    shards = []
    for rank in range(2):
        monkeypatch.setattr(distributed, "rank_world", lambda r=rank: (r, 2))
        shards.append(list(EpochBatches(n=32, size=8, seed=3)))
        assert sorted(sum(eval_batches(9, 2), [])) == [(i, -1) for i in range(rank, 9, 2)]
    for b in range(4):
        assert shards[0][b] == whole[b][0::2] and shards[1][b] == whole[b][1::2]


def _allow_local_sockets(monkeypatch) -> None:
    """DataLoader workers hand tensors over AF_UNIX sockets; the offline guard blocks every
    connect, so let local (AF_UNIX) ones through and keep refusing the network."""
    guard = socket.socket.connect

    def connect(self, address):
        return _socket.socket.connect(self, address) if self.family == socket.AF_UNIX else guard(self, address)

    monkeypatch.setattr(socket.socket, "connect", connect)


def test_train_batches_do_not_depend_on_workers_or_resume(tree, monkeypatch):
    from experiments.tasks.imagenet import build

    _allow_local_sockets(monkeypatch)

    def batches(workers: int, start: int):
        cfg = compose(["task=imagenet", "scale=smoke", f"data.root={tree}", f"data.num_workers={workers}"])
        task = build(OmegaConf.to_object(cfg), torch.device("cpu"))
        return list(task.train_batches(1, start)), task

    ref, task = batches(0, 0)
    assert task.steps_per_epoch == 32 // 8 and ref[0][0].shape == (8, 3, 32, 32) and ref[0][0].dtype == torch.float32
    for (x, y), (x2, y2) in zip(ref[1:], batches(0, 1)[0]):
        assert torch.equal(x, x2) and torch.equal(y, y2)
    for (x, y), (x2, y2) in zip(ref, batches(1, 0)[0]):
        assert torch.equal(x, x2) and torch.equal(y, y2)
    assert not torch.equal(ref[0][0], list(task.train_batches(0, 0))[0][0])


def test_paper_protocol_reaches_the_config():
    la = OmegaConf.to_object(compose(["task=imagenet", "optim=lookahead_sgd"]))
    assert (la.task.model, la.task.image_size, la.task.resize_size, la.data.batch_size) == ("resnet50", 224, 256, 256)
    assert (la.optim.lr, la.optim.momentum, la.optim.weight_decay) == (0.1, 0.9, 1e-4)
    assert (la.optim.lookahead.k, la.optim.lookahead.alpha) == (5, 0.5)
    assert la.trainer.epochs == 90 and [round(m * 90) for m in la.schedule.milestones] == [30, 60]
    cpu = OmegaConf.to_object(compose(["task=imagenet", "optim=sgd", "scale=cpu"]))
    assert cpu.optim.lr == 0.1 * cpu.data.batch_size / 256  # linear scaling rule


@pytest.mark.parametrize("optim", ["sgd", "lookahead_sgd"])
def test_trains_a_few_steps_on_a_fake_tree(optim, tree, tmp_path):
    m = train(["task=imagenet", f"optim={optim}", "scale=smoke", f"data.root={tree}", "trainer.threads=1"], tmp_path)
    assert m["status"] == "completed" and m["steps"] == 24, m.get("error")  # conf/scale/smoke.yaml
    final = m["final"]
    assert 0.0 <= final["val_acc1"] <= final["val_acc5"] <= 1.0 and final["val_loss"] > 0
    assert m["target_metric"] == "val_acc1" and m["task_info"]["train_images"] == 32
    # Smoke limits 40 and 20: all 32 training images, a fixed subset of 20 of the 21 validation ones.
    assert {k: v for k, v in m["task_info"]["subset"].items() if k != "seed"} == {
        "train": {"used": 32, "of": 32}, "val": {"used": 20, "of": 21}}
    if optim.startswith("lookahead"):
        assert "val_acc1_slow" in final and "val_acc5_fast" in final


@pytest.mark.slow
def test_trains_on_the_real_tiny_imagenet_jpegs(tmp_path):
    if not os.environ.get("LOOKAHEAD_DATA"):
        pytest.skip("set LOOKAHEAD_DATA to the folder holding imagenet_tiny/")
    root = Path(os.environ["LOOKAHEAD_DATA"]) / "imagenet_tiny" / "tiny-imagenet-200-subset10"
    if not root.is_dir():
        pytest.skip(f"{root} not found")
    data = load_imagenet(root, 32, 36)
    grey = ImageList([s for s in data.train.samples + data.val.samples if Image.open(s[0]).mode == "L"],
                     train_transform(32))
    assert len(grey) == 16  # the data README: 16 greyscale JPEGs
    assert all(grey[(i, i)][0].shape == (3, 32, 32) for i in range(len(grey)))
    m = train(["task=imagenet", "optim=lookahead_sgd", "scale=smoke", f"data.root={root}", "trainer.threads=1"], tmp_path)
    assert m["status"] == "completed" and 0.0 <= m["final"]["val_acc1"] <= 1.0


# --- scripts/data/prepare_imagenet.py on a fake flat validation folder ---------------------


def _script():
    spec = importlib.util.spec_from_file_location("prepare_imagenet", ROOT / "scripts/data/prepare_imagenet.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _flat_val(tmp_path: Path, labels: list) -> Path:
    rng = np.random.default_rng(1)
    val = tmp_path / "val"
    for i in range(1, len(labels) + 1):
        _image(val / f"ILSVRC2012_val_{i:08d}.JPEG", rng, size=(20, 20))
    return val


def _devkit(tmp_path: Path, ids: list) -> Path:
    """``data/ILSVRC2012_validation_ground_truth.txt`` and ``data/meta.mat`` (a synsets struct
    array as in the official devkit: three leaf classes and one inner node)."""
    from scipy.io import savemat

    fields = ["ILSVRC2012_ID", "WNID", "words", "gloss", "num_children", "children", "wordnet_height",
              "num_train_images"]
    synsets = np.zeros((4, 1), dtype=[(f, "O") for f in fields])
    for k, (wnid, children) in enumerate([("n01440764", 0), ("n01443537", 0), ("n01484850", 0), ("n00001740", 3)]):
        kids = np.array([1, 2, 3] if children else [], dtype=np.uint16)
        synsets[k, 0] = (np.uint16(k + 1), wnid, "words", "gloss", np.uint16(children), kids, np.uint16(0),
                         np.uint16(1300))
    data = tmp_path / "devkit" / "data"
    data.mkdir(parents=True)
    savemat(str(data / "meta.mat"), {"synsets": synsets})
    (data / "ILSVRC2012_validation_ground_truth.txt").write_text("".join(f"{i}\n" for i in ids))
    return tmp_path / "devkit"


def test_prepare_sorts_flat_val_with_the_devkit(tmp_path, capsys):
    ids = [3, 1, 1, 2, 3]
    val, devkit = _flat_val(tmp_path, ids), _devkit(tmp_path, ids)
    script = _script()
    assert script.main(["--val-dir", str(val), "--devkit", str(devkit), "--dry-run"]) == 0
    assert "would move 5 images into 3 class folders" in capsys.readouterr().out
    assert len(list(val.glob("*.JPEG"))) == 5  # dry run: untouched
    assert script.main(["--val-dir", str(val), "--devkit", str(devkit)]) == 0
    assert sorted(p.relative_to(val).as_posix() for p in val.rglob("*.JPEG")) == [
        "n01440764/ILSVRC2012_val_00000002.JPEG", "n01440764/ILSVRC2012_val_00000003.JPEG",
        "n01443537/ILSVRC2012_val_00000004.JPEG",
        "n01484850/ILSVRC2012_val_00000001.JPEG", "n01484850/ILSVRC2012_val_00000005.JPEG"]
    assert script.main(["--val-dir", str(val), "--devkit", str(devkit)]) == 0  # nothing left to do
    assert "moved 0 images" in capsys.readouterr().out


def test_prepare_sorts_with_a_csv_and_rejects_bad_labels(tmp_path, capsys):
    val = _flat_val(tmp_path, [0, 0, 0])
    rows = ["ImageId,PredictionString", "ILSVRC2012_val_00000001,n01443537 1 2 3 4",
            "ILSVRC2012_val_00000002,n01440764 5 6 7 8 n01440764 1 1 2 2", "ILSVRC2012_val_00000003,n01443537 0 0 9 9"]
    (tmp_path / "LOC_val_solution.csv").write_text("\n".join(rows) + "\n")
    dest = tmp_path / "sorted"
    script = _script()
    assert script.main(["--val-dir", str(val), "--csv", str(tmp_path / "LOC_val_solution.csv"),
                        "--dest", str(dest), "--copy"]) == 0
    assert sorted(p.parent.name for p in dest.rglob("*.JPEG")) == ["n01440764", "n01443537", "n01443537"]
    assert len(list(val.glob("*.JPEG"))) == 3  # copied, not moved
    (tmp_path / "bad.csv").write_text("ImageId,PredictionString\nILSVRC2012_val_00000001,42 1 2 3 4\n")
    assert script.main(["--val-dir", str(val), "--csv", str(tmp_path / "bad.csv")]) == 2
    assert "not wnids" in capsys.readouterr().err
