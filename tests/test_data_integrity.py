"""Data integrity on load: each damaged file is built for real and the error names it, the expectation and the fix.

Tiny generated datasets (conftest) for the structural checks; copies of the real MNIST / Fashion-MNIST
archives for the checksum rule (a file holding the official record count must have the official MD5).
"""
import gzip
import os
import pickle
import shutil

import numpy as np
import pytest

from forgetbench.benchmarks import data
from tests.conftest import make_tiny_cifar, make_tiny_mnist, write_idx

FIX = "Fix: delete this file and load again with data.download=true"


@pytest.fixture(autouse=True)
def _fresh_cache():
    data._load_cached.cache_clear()


def expect_error(root, name, path, *fragments):
    """Loading ``name`` fails with a DataIntegrityError naming ``path``, every fragment, and the fix."""
    with pytest.raises(data.DataIntegrityError) as info:
        data.load_dataset(name, root)
    message = str(info.value)
    assert info.value.path == path and message.startswith(f"{path}: "), message
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"
    assert FIX in message and "restore the file" in message
    assert isinstance(info.value, ValueError)
    return message


def rewrite_gz(path, edit):
    """Decompress ``path``, apply ``edit`` to the bytes, and gzip the result back in place."""
    with gzip.open(path) as f:
        payload = f.read()
    with gzip.open(path, "wb") as f:
        f.write(edit(payload))


def raw_dir(root, folder="MNIST"):
    return root / folder / "raw"


# ---- MNIST-type IDX files --------------------------------------------------------------------------

def test_test_labels_copied_over_train_labels(tmp_path):
    make_tiny_mnist(tmp_path)
    raw = raw_dir(tmp_path)
    shutil.copy(raw / "t10k-labels-idx1-ubyte.gz", raw / "train-labels-idx1-ubyte.gz")
    path = raw / "train-labels-idx1-ubyte.gz"
    expect_error(tmp_path, "mnist", path, "label count differs from the image count",
                 "expected 60 labels, one per image in train-images-idx3-ubyte.gz", "found 30 labels")


def test_truncated_gz(tmp_path):
    make_tiny_mnist(tmp_path)
    path = raw_dir(tmp_path) / "train-images-idx3-ubyte.gz"
    blob = path.read_bytes()
    path.write_bytes(blob[: len(blob) // 2])
    expect_error(tmp_path, "mnist", path, "truncated gzip archive", "expected a complete gzip stream",
                 f"found the data ends early ({len(blob) // 2} bytes; EOFError")


def test_not_a_gzip_file(tmp_path):  # e.g. an HTML error page saved by a failed download
    make_tiny_mnist(tmp_path)
    path = raw_dir(tmp_path) / "t10k-images-idx3-ubyte.gz"
    path.write_bytes(b"<html>404 Not Found</html>")
    expect_error(tmp_path, "mnist", path, "corrupt gzip archive", "expected a valid gzip stream",
                 "BadGzipFile")


def test_short_idx_payload(tmp_path):
    make_tiny_mnist(tmp_path)
    path = raw_dir(tmp_path) / "train-images-idx3-ubyte.gz"
    rewrite_gz(path, lambda b: b[:-100])
    expect_error(tmp_path, "mnist", path, "IDX payload length does not match its header",
                 "expected 47040 bytes after the 16-byte header (60 x 28 x 28 uint8)", "found 46940 bytes")


def test_short_uncompressed_idx_payload(tmp_path):
    make_tiny_mnist(tmp_path)
    gz = raw_dir(tmp_path) / "t10k-labels-idx1-ubyte.gz"
    path = gz.with_suffix("")
    with gzip.open(gz) as f:
        path.write_bytes(f.read()[:-5])
    gz.unlink()
    expect_error(tmp_path, "mnist", path, "expected 30 bytes after the 8-byte header (30 uint8)", "found 25 bytes")


def test_images_file_used_as_labels(tmp_path):
    make_tiny_mnist(tmp_path)
    raw = raw_dir(tmp_path)
    shutil.copy(raw / "train-images-idx3-ubyte.gz", raw / "train-labels-idx1-ubyte.gz")
    expect_error(tmp_path, "mnist", raw / "train-labels-idx1-ubyte.gz", "wrong IDX magic number",
                 "expected 0x00000801 (uint8 labels, 1 dimension)",
                 "found 0x00000803 (uint8, 3 dimensions: an images file)")


def test_wrong_magic(tmp_path):
    make_tiny_mnist(tmp_path)
    path = raw_dir(tmp_path) / "t10k-images-idx3-ubyte.gz"
    rewrite_gz(path, lambda b: b"\x00\x00\x0c\x03" + b[4:])  # int32 instead of uint8
    expect_error(tmp_path, "mnist", path, "wrong IDX magic number",
                 "expected 0x00000803 (uint8 images, 3 dimensions)", "found 0x00000C03 (int32, 3 dimensions)")


def test_images_not_28_by_28(tmp_path):
    make_tiny_mnist(tmp_path, "FashionMNIST")
    path = raw_dir(tmp_path, "FashionMNIST") / "t10k-images-idx3-ubyte.gz"
    write_idx(path, np.zeros((30, 32, 32), np.uint8))
    expect_error(tmp_path, "fashion_mnist", path, "wrong IDX dimensions", "expected N x 28 x 28 images (N >= 1)",
                 "found 30 x 32 x 32")


def test_mnist_label_out_of_range(tmp_path):
    make_tiny_mnist(tmp_path)
    path = raw_dir(tmp_path) / "t10k-labels-idx1-ubyte.gz"
    labels = np.arange(30) % 10
    labels[[4, 7]] = [12, 255]
    write_idx(path, labels)
    expect_error(tmp_path, "mnist", path, "labels out of range", "expected labels 0..9",
                 "found 2 labels outside it (min 0, max 255; first at index 4)")


# ---- checksums: copies of the real archives ---------------------------------------------------------

def tiny_mnist_with_real_test_images(root, data_root):
    """Tiny generated train files and the real t10k images (linked): cheap to load, real test split."""
    make_tiny_mnist(root)
    raw = raw_dir(root)
    (raw / "t10k-images-idx3-ubyte.gz").unlink()
    os.symlink(raw_dir(data_root) / "t10k-images-idx3-ubyte.gz", raw / "t10k-images-idx3-ubyte.gz")
    return raw


def gzip_mtime_changed(blob):  # same size, same content once decompressed, different bytes
    return blob[:4] + bytes(b ^ 0xFF for b in blob[4:8]) + blob[8:]


def one_label_changed(blob):
    payload = bytearray(gzip.decompress(blob))
    payload[8] = (payload[8] + 1) % 10
    return gzip.compress(bytes(payload))


@pytest.mark.parametrize("edit", [gzip_mtime_changed, one_label_changed], ids=["same-size", "modified-labels"])
def test_official_count_with_wrong_md5_is_rejected(tmp_path, mnist_root, edit):
    raw = tiny_mnist_with_real_test_images(tmp_path, mnist_root)
    path = raw / "t10k-labels-idx1-ubyte.gz"
    official = (raw_dir(mnist_root) / "t10k-labels-idx1-ubyte.gz").read_bytes()
    path.write_bytes(edit(official))
    assert (len(path.read_bytes()) == len(official)) == (edit is gzip_mtime_changed)
    expect_error(tmp_path, "mnist", path, "checksum mismatch with the official file (10000 records",
                 "expected MD5 ec29112dd5afa0611ce80d1b7f02629c (torchvision's MNIST.resources)", "found MD5 ")


def test_flipped_byte_in_real_archive_is_corrupt(tmp_path, mnist_root):
    raw = tiny_mnist_with_real_test_images(tmp_path, mnist_root)
    path = raw / "t10k-labels-idx1-ubyte.gz"
    blob = bytearray((raw_dir(mnist_root) / "t10k-labels-idx1-ubyte.gz").read_bytes())
    blob[len(blob) // 2] ^= 0xFF
    path.write_bytes(bytes(blob))
    expect_error(tmp_path, "mnist", path, "corrupt gzip archive", "expected a valid gzip stream")


def test_real_test_labels_copied_over_train_labels(tmp_path, mnist_root):
    make_tiny_mnist(tmp_path)
    path = raw_dir(tmp_path) / "train-labels-idx1-ubyte.gz"
    shutil.copy(raw_dir(mnist_root) / "t10k-labels-idx1-ubyte.gz", path)
    expect_error(tmp_path, "mnist", path, "this is a different dataset file",
                 "expected the official MNIST train-labels-idx1-ubyte.gz (MD5 d53e105ee54ea40749a09fcbcd1e9432)",
                 "found a byte copy of the official MNIST t10k-labels-idx1-ubyte.gz")


def test_fashion_file_in_the_mnist_folder(tmp_path, mnist_root):
    make_tiny_mnist(tmp_path)
    path = raw_dir(tmp_path) / "t10k-labels-idx1-ubyte.gz"
    shutil.copy(raw_dir(mnist_root, "FashionMNIST") / "t10k-labels-idx1-ubyte.gz", path)
    expect_error(tmp_path, "mnist", path, "found a byte copy of the official FashionMNIST t10k-labels-idx1-ubyte.gz")


def test_official_md5s_are_read_from_torchvision():
    import torchvision.datasets as tvd

    table = data._official_md5s()
    assert table[("mnist", "train-images-idx3-ubyte.gz")] == dict(tvd.MNIST.resources)["train-images-idx3-ubyte.gz"]
    assert table[("fashion_mnist", "t10k-labels-idx1-ubyte.gz")] == dict(tvd.FashionMNIST.resources)[
        "t10k-labels-idx1-ubyte.gz"]
    assert table[("cifar10", "test_batch")] == dict(tvd.CIFAR10.test_list)["test_batch"]
    assert table[("cifar100", "train")] == dict(tvd.CIFAR100.train_list)["train"]


@pytest.mark.parametrize("name,folder", [("mnist", "MNIST"), ("fashion_mnist", "FashionMNIST")])
def test_real_datasets_pass_with_verified_checksums(mnist_root, name, folder):
    ds = data.load_dataset(name, mnist_root)
    assert ds.train_x.shape == (60000, 1, 28, 28) and ds.test_y.shape == (10000,) and ds.num_classes == 10
    for path in raw_dir(mnist_root, folder).glob("*.gz"):  # each archive's MD5 was taken and is the official one
        st = path.stat()
        assert data._MD5_CACHE[(str(path), st.st_mtime_ns, st.st_size)] == data._official_md5s()[(name, path.name)]


def test_md5_is_taken_once_per_path_mtime_and_size(tmp_path, monkeypatch):
    make_tiny_mnist(tmp_path)
    calls = []
    real_md5 = data.hashlib.md5
    monkeypatch.setattr(data.hashlib, "md5", lambda b: calls.append(1) or real_md5(b))
    data.load_dataset("mnist", tmp_path)
    assert len(calls) == 4
    data._load_cached.cache_clear()
    data.load_dataset("mnist", tmp_path)
    assert len(calls) == 4  # cached
    path = raw_dir(tmp_path) / "t10k-labels-idx1-ubyte.gz"
    write_idx(path, np.arange(30) % 10)
    os.utime(path, ns=(1, 1))  # a rewritten file: new mtime, so taken again
    data._load_cached.cache_clear()
    data.load_dataset("mnist", tmp_path)
    assert len(calls) == 5


# ---- CIFAR pickles ----------------------------------------------------------------------------------

def rewrite_pickle(path, edit):
    with open(path, "rb") as f:
        batch = pickle.load(f)
    edit(batch)
    with open(path, "wb") as f:
        pickle.dump(batch, f)


def test_cifar_missing_key(tmp_path):
    make_tiny_cifar(tmp_path, 10)
    path = tmp_path / "cifar-10-batches-py" / "data_batch_3"
    rewrite_pickle(path, lambda b: b.pop(b"labels"))
    expect_error(tmp_path, "cifar10", path, "wrong pickle contents", "expected a dict with keys [b'data', b'labels']",
                 "found keys [b'data']")


def test_cifar100_coarse_labels_only(tmp_path):  # the fine labels are the ones used
    make_tiny_cifar(tmp_path, 100)
    path = tmp_path / "cifar-100-python" / "test"
    rewrite_pickle(path, lambda b: b.update({b"coarse_labels": b.pop(b"fine_labels")}))
    expect_error(tmp_path, "cifar100", path, "expected a dict with keys [b'data', b'fine_labels']")


@pytest.mark.parametrize("array,found", [
    (np.zeros((20, 3000), np.uint8), "found uint8 array of shape (20, 3000)"),
    (np.zeros((20, 3072), np.float64), "found float64 array of shape (20, 3072)"),
    (np.zeros((20, 3, 32, 32), np.uint8), "found uint8 array of shape (20, 3, 32, 32)"),
], ids=["3000-columns", "float64", "4-d"])
def test_cifar_wrong_data_shape(tmp_path, array, found):
    make_tiny_cifar(tmp_path, 10)
    path = tmp_path / "cifar-10-batches-py" / "test_batch"
    rewrite_pickle(path, lambda b: b.update({b"data": array}))
    expect_error(tmp_path, "cifar10", path, "wrong b'data' array",
                 "expected an N x 3072 uint8 array (N >= 1 images of 3 x 32 x 32)", found)


def test_cifar_label_count(tmp_path):
    make_tiny_cifar(tmp_path, 10)
    path = tmp_path / "cifar-10-batches-py" / "data_batch_1"
    rewrite_pickle(path, lambda b: b[b"labels"].pop())
    expect_error(tmp_path, "cifar10", path, "label count differs from the image count",
                 "expected 20 labels, one per row of b'data'", "found 19 labels in b'labels'")


@pytest.mark.parametrize("classes,name,folder,file,bad", [
    (10, "cifar10", "cifar-10-batches-py", "data_batch_2", 10),
    (100, "cifar100", "cifar-100-python", "train", 100),
    (100, "cifar100", "cifar-100-python", "test", -1),
])
def test_cifar_label_out_of_range(tmp_path, classes, name, folder, file, bad):
    make_tiny_cifar(tmp_path, classes)
    path = tmp_path / folder / file
    key = b"labels" if classes == 10 else b"fine_labels"
    rewrite_pickle(path, lambda b: b[key].__setitem__(3, bad))
    expect_error(tmp_path, name, path, "labels out of range", f"expected labels 0..{classes - 1}",
                 "found 1 label outside it", "first at index 3")


def test_cifar_truncated_pickle(tmp_path):
    make_tiny_cifar(tmp_path, 10)
    path = tmp_path / "cifar-10-batches-py" / "data_batch_5"
    blob = path.read_bytes()
    path.write_bytes(blob[: len(blob) // 3])
    expect_error(tmp_path, "cifar10", path, "unreadable pickle", "expected a CIFAR10 python pickle", "found ")
