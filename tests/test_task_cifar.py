"""CIFAR reader on fakes in the official pickle layout, batched augmentation, every optimizer."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from conftest import CONF_DIR, train
from experiments.data.cifar import augment, load_cifar
from experiments.errors import DataError
from experiments.models.resnet_cifar import build as build_model
from fakes import write_cifar

OPTIMS = sorted(p.stem for p in (Path(CONF_DIR) / "optim").glob("*.yaml"))


@pytest.mark.parametrize("py2", [True, False], ids=["py2-str-pickle", "py3-pickle"])
@pytest.mark.parametrize("num_classes", [10, 100])
def test_reader_parses_the_official_layout(tmp_path, num_classes, py2):
    write_cifar(tmp_path, num_classes, n_train=50, n_test=20, py2=py2)
    data = load_cifar(tmp_path, num_classes)
    assert data.train_x.shape == (50, 3, 32, 32) and data.train_x.dtype == torch.uint8
    assert data.test_x.shape == (20, 3, 32, 32) and len(data.test_y) == 20
    assert int(data.train_y.max()) < num_classes
    mean, std = data.channel_stats()
    assert mean.shape == (3,) and torch.all(std > 0)


def test_reader_keeps_pixel_order(tmp_path):
    # The official rows are channel-major: 1024 red values, then green, then blue.
    write_cifar(tmp_path, 10, n_train=5, n_test=5)
    data = load_cifar(tmp_path, 10)
    import pickle

    with open(tmp_path / "cifar-10-batches-py" / "test_batch", "rb") as f:
        raw = pickle.load(f, encoding="latin1")
    assert torch.equal(data.test_x[3, 1].flatten(), torch.from_numpy(raw["data"][3, 1024:2048]))
    assert data.test_y.tolist() == raw["labels"]


def test_missing_and_corrupt_files_give_clear_errors(tmp_path):
    with pytest.raises(DataError, match="CIFAR-10 not found: looked for .*data_batch_1.*make data-cifar10"):
        load_cifar(tmp_path / "nowhere", 10)
    write_cifar(tmp_path, 10)
    (tmp_path / "cifar-10-batches-py" / "data_batch_3").write_bytes(b"\x80\x02truncated")
    with pytest.raises(DataError, match="data_batch_3 is not a readable CIFAR batch"):
        load_cifar(tmp_path, 10)


def test_augment_is_a_crop_of_the_padded_image_and_reproducible():
    x = torch.arange(2 * 3 * 32 * 32, dtype=torch.float32).reshape(2, 3, 32, 32) + 1
    a = augment(x, torch.Generator().manual_seed(0))
    b = augment(x, torch.Generator().manual_seed(0))
    assert torch.equal(a, b) and a.shape == x.shape
    padded = torch.nn.functional.pad(x, (4, 4, 4, 4))
    for i in range(2):
        found = any(torch.equal(a[i], crop) or torch.equal(a[i], crop.flip(-1))
                    for dy in range(9) for dx in range(9) for crop in [padded[i, :, dy:dy + 32, dx:dx + 32]])
        assert found


def test_models_have_the_published_sizes():
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert count(build_model("resnet18", 10)) == 11_173_962  # Cutout/kuangliu CIFAR ResNet-18
    assert count(build_model("resnet20", 10)) == 269_722  # He et al.: 0.27M
    assert count(build_model("resnet32", 10)) == 464_154  # He et al.: 0.46M


@pytest.fixture(scope="module")
def cifar_root(tmp_path_factory) -> Path:
    return write_cifar(tmp_path_factory.mktemp("cifar"), n_train=64, n_test=32)


@pytest.mark.parametrize("optim", OPTIMS)
def test_every_optimizer_trains_on_fake_cifar(optim, cifar_root, tmp_path):
    extra = ["optim.inner=lion", "optim.lr=1e-4"] if optim.endswith("timm") else []
    m = train(["task=cifar10", f"optim={optim}", "scale=smoke", f"data.root={cifar_root}", *extra], tmp_path)
    assert m["status"] == "completed" and m["steps"] == 24  # conf/scale/smoke.yaml
    assert 0.0 <= m["final"]["test_acc"] <= 1.0
    if optim.startswith("lookahead"):
        assert "test_acc_slow" in m["final"] and "test_acc_fast" in m["final"]
    if optim.startswith("polyak"):
        assert "test_acc_avg" in m["final"]


@pytest.mark.parametrize("channels_last", [True, False])
def test_layout_is_applied_on_cpu_recorded_and_changes_only_rounding(channels_last, cifar_root):
    from omegaconf import OmegaConf

    from conftest import compose
    from experiments.tasks import build_task

    def task(flag):
        torch.manual_seed(0)
        cfg = compose(["task=cifar10", "scale=smoke", f"data.root={cifar_root}", f"trainer.channels_last={flag}"])
        return build_task(OmegaConf.to_object(cfg), torch.device("cpu"))

    t, reference = task(channels_last), task(False)
    name = "channels_last" if channels_last else "contiguous"
    assert t.info["memory_format"] == name  # what the manifest's task_info records
    x, _ = next(t.train_batches(0, 0))
    conv = next(m for m in t.model.modules() if isinstance(m, torch.nn.Conv2d))
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    assert x.is_contiguous(memory_format=fmt) and conv.weight.is_contiguous(memory_format=fmt)
    # Same weights, same batch: the outputs agree to float rounding whatever the layout.
    t.model.eval(), reference.model.eval()
    x_ref, _ = next(reference.train_batches(0, 0))
    assert torch.equal(x.contiguous(), x_ref)
    torch.testing.assert_close(t.model(x), reference.model(x_ref), rtol=1e-4, atol=1e-5)


def _smoke_task(root: Path, *overrides: str):
    from omegaconf import OmegaConf

    from conftest import compose
    from experiments.tasks import build_task

    cfg = OmegaConf.to_object(compose(["task=cifar10", "scale=smoke", f"data.root={root}", *overrides]))
    torch.manual_seed(0)
    return cfg, build_task(cfg, torch.device("cpu"))


class _Always(torch.nn.Module):
    """A "model" that answers one class for every image."""

    def __init__(self, label: int) -> None:
        super().__init__()
        self.label = label

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.one_hot(torch.full((len(x),), self.label), 10).float()


class _Pixels(torch.nn.Module):
    """A "model" whose logits are ten normalized pixels: its loss depends on which images it sees."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1)[:, :10]


def test_smoke_subsets_are_stratified_on_a_class_sorted_test_batch(tmp_path):
    # A test batch sorted by class, 30 images per class: its first 100 images are classes 0-3.
    root = write_cifar(tmp_path, 10, n_train=200, n_test=300, class_sorted_test=True)
    full = load_cifar(root, 10)
    cfg, task = _smoke_task(root)
    assert (cfg.task.limit_train, cfg.task.limit_test) == (64, 100)
    subset = full.subset(cfg.task.limit_train, cfg.task.limit_test)
    assert torch.bincount(subset.test_y, minlength=10).tolist() == [10] * 10  # stratified
    assert len(set(subset.train_y.tolist())) > 1 and len(subset.train_y) == 64
    # The task evaluates that subset: a model answering one class scores 1/10 on each class...
    for label in (0, 9):
        assert task.evaluate(_Always(label))["test_acc"] == pytest.approx(0.1)
    # ...and the same images whatever the run seed (the subset is drawn with a constant seed).
    _, other = _smoke_task(root, "seed=7")
    assert other.evaluate(_Pixels()) == task.evaluate(_Pixels())
    assert _smoke_task(root, "task.limit_test=90")[1].evaluate(_Pixels()) != task.evaluate(_Pixels())
    from experiments.data.subset import SUBSET_SEED

    assert task.info["subset"] == {"seed": SUBSET_SEED, "train": {"used": 64, "of": 200},
                                   "test": {"used": 100, "of": 300}}
    # The first test batch already holds several classes (a per-update window reads only it).
    assert len(set(subset.test_y[: cfg.data.eval_batch_size].tolist())) == 10


def test_limits_of_zero_select_every_image_in_file_order(tmp_path):
    root = write_cifar(tmp_path, 10, n_train=60, n_test=30, class_sorted_test=True)
    full = load_cifar(root, 10)
    whole = full.subset(0, 0)
    for name in ("train_x", "train_y", "test_x", "test_y"):
        assert getattr(whole, name) is getattr(full, name)  # the arrays as read, not a reordered copy
    assert full.subset(60, 30).train_x is full.train_x  # a limit beyond the split keeps it whole too
    cfg, task = _smoke_task(root, "task.limit_train=0", "task.limit_test=0")
    assert "subset" not in task.info and task.steps_per_epoch == math.ceil(60 / cfg.data.batch_size)
    assert task.evaluate(_Always(0))["test_acc"] == pytest.approx(0.1)  # all 30 images
    # Training batches are the slices of the run's permutation of the whole set, as without limits.
    from experiments.tasks.base import batch_generator

    order = torch.randperm(60, generator=batch_generator(cfg.seed, 0))
    for i, (_, y) in enumerate(task.train_batches(0, 0)):
        assert torch.equal(y, full.train_y[order[i * 8 : (i + 1) * 8]])


def test_prepare_cifar_checks_md5_then_unpacks(tmp_path, monkeypatch, capsys):
    import tarfile

    from scripts.data import prepare_cifar

    write_cifar(tmp_path / "src", 10)
    archive = tmp_path / "cifar-10-python.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(tmp_path / "src" / "cifar-10-batches-py", arcname="cifar-10-batches-py")
    with pytest.raises(SystemExit) as stop:
        prepare_cifar.prepare("cifar10", tmp_path / "bad", archive)
    assert stop.value.code == 2 and "has md5" in capsys.readouterr().err
    with pytest.raises(SystemExit) as stop:  # ARCHIVE= naming a file that is not there
        prepare_cifar.prepare("cifar10", tmp_path / "bad", tmp_path / "nope.tar.gz")
    assert stop.value.code == 2 and "no archive" in capsys.readouterr().err
    url, _, folder = prepare_cifar.ARCHIVES["cifar10"]
    monkeypatch.setitem(prepare_cifar.ARCHIVES, "cifar10", (url, prepare_cifar.md5(archive), folder))
    prepare_cifar.prepare("cifar10", tmp_path / "good", archive)
    assert load_cifar(tmp_path / "good", 10).train_x.shape[0] == 50


def test_a_per_update_window_scores_a_stratified_subset_of_the_whole_test_set(tmp_path):
    # The full test set, class-sorted (as the test batch written from per-class folders is): the
    # window's first max_batches batches would be classes 0-1 only; it reads a stratified subset.
    root = write_cifar(tmp_path, 10, n_train=60, n_test=300, class_sorted_test=True)
    _, task = _smoke_task(root, "task.limit_test=0", "data.eval_batch_size=20",
                          "+experiment_scale=fig10_per_update_cpu",
                          "trainer.per_update.start_epoch=0", "trainer.per_update.max_batches=3")
    for label in (0, 9):
        assert task.per_update_evaluate(_Always(label))["test_acc"] == pytest.approx(0.1)  # 6 of 60
    assert task.evaluate(_Always(0))["test_acc"] == pytest.approx(0.1)  # the whole set, 30 of 300


def test_airbench_fits_its_whitening_to_the_training_images(tmp_path):
    root = write_cifar(tmp_path, 10, n_train=60, n_test=20)
    _, task = _smoke_task(root, "task.model=airbench", "data.batch_size=16")
    w = task.model.whiten.weight
    assert torch.equal(w[12:], -w[:12]) and w.abs().sum() > 0
    x, y = next(task.train_batches(0, 0))
    loss, _ = task.loss(task.model, (x, y), None)
    assert torch.isfinite(loss)
