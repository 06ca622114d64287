"""CIFAR reader on fakes in the official pickle layout, batched augmentation, every optimizer."""

from __future__ import annotations

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
    assert m["status"] == "completed" and m["steps"] == 4
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


def test_prepare_cifar_checks_md5_then_unpacks(tmp_path, monkeypatch):
    import tarfile

    from scripts.data import prepare_cifar

    write_cifar(tmp_path / "src", 10)
    archive = tmp_path / "cifar-10-python.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(tmp_path / "src" / "cifar-10-batches-py", arcname="cifar-10-batches-py")
    with pytest.raises(SystemExit, match="has md5"):
        prepare_cifar.prepare("cifar10", tmp_path / "bad", archive)
    url, _, folder = prepare_cifar.ARCHIVES["cifar10"]
    monkeypatch.setitem(prepare_cifar.ARCHIVES, "cifar10", (url, prepare_cifar.md5(archive), folder))
    prepare_cifar.prepare("cifar10", tmp_path / "good", archive)
    assert load_cifar(tmp_path / "good", 10).train_x.shape[0] == 50
