"""Datasets as uint8 tensors, read once from a data root in torchvision's layout.

MNIST-type files are read straight from the ``.gz`` IDX archives (nothing is written next
to them, so a read-only root works); CIFAR from the standard python pickles. When files are
missing and ``download`` is allowed, torchvision downloads them into the root first.
"""
from __future__ import annotations

import functools
import gzip
import os
import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

ENV_VAR = "FORGETBENCH_DATA"


class DataNotFoundError(FileNotFoundError):
    """The dataset files are not under the data root."""


@dataclass(frozen=True)
class Dataset:
    """A labelled image dataset held once in memory, images as uint8 N x C x H x W."""

    name: str
    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    mean: tuple[float, ...]
    std: tuple[float, ...]

    @property
    def num_classes(self) -> int:
        return int(self.train_y.max()) + 1

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.train_x.shape[1:])


@dataclass(frozen=True)
class _Spec:
    folder: str
    files: tuple[str, ...]
    torchvision_class: str
    mean: tuple[float, ...]
    std: tuple[float, ...]


_MNIST_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
SPECS = {
    "mnist": _Spec("MNIST/raw", _MNIST_FILES, "MNIST", (0.1307,), (0.3081,)),
    "fashion_mnist": _Spec("FashionMNIST/raw", _MNIST_FILES, "FashionMNIST", (0.2860,), (0.3530,)),
    "cifar10": _Spec(
        "cifar-10-batches-py",
        tuple(f"data_batch_{i}" for i in range(1, 6)) + ("test_batch",),
        "CIFAR10", (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616),
    ),
    "cifar100": _Spec(
        "cifar-100-python", ("train", "test"), "CIFAR100",
        (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762),
    ),
}


def default_root() -> Path:
    return Path(os.environ.get(ENV_VAR, "data"))


def load_dataset(name: str, root: str | os.PathLike | None = None, download: bool = False) -> Dataset:
    """Load ``name`` (one of ``SPECS``) from ``root`` (default: $FORGETBENCH_DATA or ./data)."""
    if name not in SPECS:
        raise ValueError(f"unknown dataset {name!r}; choose one of {sorted(SPECS)}")
    root = Path(root) if root is not None else default_root()
    return _load_cached(name, root.expanduser().resolve(), bool(download))


@functools.lru_cache(maxsize=4)
def _load_cached(name: str, root: Path, download: bool) -> Dataset:
    spec = SPECS[name]
    missing = _missing_files(spec, root)
    if missing and download:
        import torchvision.datasets as tvd

        for train in (True, False):
            getattr(tvd, spec.torchvision_class)(str(root), train=train, download=True)
        missing = _missing_files(spec, root)
    if missing:
        raise DataNotFoundError(
            f"{name}: files not found under data root {root}/{spec.folder}: {', '.join(missing)}.\n"
            f"Fix: point the root at a folder holding {spec.folder}/ (torchvision layout) with "
            f"`data.root=/path` or `export {ENV_VAR}=/path`, or let torchvision fetch it with "
            f"`data.download=true`."
        )
    folder = root / spec.folder
    if name in ("mnist", "fashion_mnist"):
        arrays = [_read_idx(_existing(folder, f)) for f in spec.files]
        train_x, train_y, test_x, test_y = arrays
        train_x, test_x = train_x[:, None], test_x[:, None]
    else:
        label_key = b"labels" if name == "cifar10" else b"fine_labels"
        train = [_read_pickle(folder / f) for f in spec.files[:-1]]
        test = _read_pickle(folder / spec.files[-1])
        train_x = np.concatenate([b[b"data"] for b in train]).reshape(-1, 3, 32, 32)
        train_y = np.concatenate([b[label_key] for b in train])
        test_x = np.asarray(test[b"data"]).reshape(-1, 3, 32, 32)
        test_y = np.asarray(test[label_key])
    as_x = lambda a: torch.from_numpy(np.array(a, dtype=np.uint8))  # noqa: E731
    as_y = lambda a: torch.from_numpy(np.asarray(a, dtype=np.int64))  # noqa: E731
    return Dataset(name, as_x(train_x), as_y(train_y), as_x(test_x), as_y(test_y), spec.mean, spec.std)


def _existing(folder: Path, stem: str) -> Path | None:
    for candidate in (folder / f"{stem}.gz", folder / stem):
        if candidate.is_file():
            return candidate
    return None


def _missing_files(spec: _Spec, root: Path) -> list[str]:
    folder = root / spec.folder
    if spec.folder.endswith("raw"):
        return [f"{f}.gz" for f in spec.files if _existing(folder, f) is None]
    return [f for f in spec.files if not (folder / f).is_file()]


def _read_idx(path: Path) -> np.ndarray:
    """Read an IDX file (optionally gzipped): magic, big-endian sizes, then raw uint8."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        data = f.read()
    zero, dtype, ndim = data[0:2], data[2], data[3]
    if zero != b"\x00\x00" or dtype != 0x08:
        raise ValueError(f"{path} is not a uint8 IDX file")
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def _read_pickle(path: Path) -> dict:
    with open(path, "rb") as f:
        return pickle.load(f, encoding="bytes")
