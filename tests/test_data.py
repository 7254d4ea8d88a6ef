"""Loaders read the torchvision layout with the real code: tiny generated files and real MNIST."""
import numpy as np
import pytest
import torch

from forgetbench.benchmarks import data
from tests.conftest import make_tiny_cifar, make_tiny_mnist


@pytest.fixture(autouse=True)
def _fresh_cache():
    data._load_cached.cache_clear()


def test_mnist_idx_files_round_trip(tmp_path):
    arrays = make_tiny_mnist(tmp_path)
    ds = data.load_dataset("mnist", tmp_path)
    assert ds.train_x.dtype == torch.uint8 and ds.train_x.shape == (60, 1, 28, 28)
    np.testing.assert_array_equal(ds.train_x[:, 0].numpy(), arrays["train"][0])
    np.testing.assert_array_equal(ds.test_y.numpy(), arrays["t10k"][1])
    assert ds.num_classes == 10


def test_uncompressed_idx_files_are_read_too(tmp_path):
    import gzip
    import shutil

    make_tiny_mnist(tmp_path)
    for gz in (tmp_path / "MNIST" / "raw").glob("*.gz"):
        with gzip.open(gz) as src, open(gz.with_suffix(""), "wb") as dst:
            shutil.copyfileobj(src, dst)
        gz.unlink()
    assert data.load_dataset("mnist", tmp_path).train_x.shape[0] == 60


@pytest.mark.parametrize("classes,name", [(10, "cifar10"), (100, "cifar100")])
def test_cifar_pickles_round_trip(tmp_path, classes, name):
    train, test = make_tiny_cifar(tmp_path, classes)
    ds = data.load_dataset(name, tmp_path)
    expected_x = np.concatenate([b[b"data"] for b in train]).reshape(-1, 3, 32, 32)
    np.testing.assert_array_equal(ds.train_x.numpy(), expected_x)
    assert ds.test_x.shape[1:] == (3, 32, 32) and len(ds.test_y) == len(test[b"data"])


def test_missing_files_error_names_root_files_and_fix(tmp_path):
    with pytest.raises(data.DataNotFoundError) as info:
        data.load_dataset("cifar10", tmp_path)
    message = str(info.value)
    assert str(tmp_path) in message and "data_batch_1" in message
    assert "data.root=" in message and "FORGETBENCH_DATA" in message and "data.download=true" in message


def test_download_uses_torchvision_when_allowed(tmp_path, monkeypatch):
    import torchvision.datasets as tvd

    calls = []

    class FakeMNIST:  # stands in for the network: writes the files torchvision would
        def __init__(self, root, train, download):
            calls.append((root, train, download))
            make_tiny_mnist(tmp_path)

    monkeypatch.setattr(tvd, "MNIST", FakeMNIST)
    ds = data.load_dataset("mnist", tmp_path, download=True)
    assert calls and all(c[2] for c in calls) and ds.train_x.shape[0] == 60


def test_unknown_dataset_lists_choices(tmp_path):
    with pytest.raises(ValueError, match="cifar100.*mnist"):
        data.load_dataset("svhn", tmp_path)


def test_real_mnist_matches_its_published_statistics(mnist_root):
    ds = data.load_dataset("mnist", mnist_root)
    assert ds.train_x.shape == (60000, 1, 28, 28) and ds.test_x.shape == (10000, 1, 28, 28)
    assert ds.test_y.bincount().tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    assert float(ds.train_x.float().mean() / 255) == pytest.approx(0.1307, abs=1e-4)
