"""Datasets as uint8 tensors, read once from a data root in torchvision's layout.

MNIST-type files are read straight from the ``.gz`` IDX archives (nothing is written next
to them, so a read-only root works); CIFAR from the standard python pickles. When files are
missing and ``download`` is allowed, torchvision downloads them into the root first.

Every file is checked on load (``DataIntegrityError`` names the file, what was expected, what
was found and the fix): IDX magic numbers, dimensions and payload length; CIFAR pickle keys,
data shape and dtype; one label per image; labels within the dataset's classes. Checksum rule:
a file with an official name (torchvision's ``resources`` / ``train_list`` / ``test_list``) must
not be a byte copy of a *different* official file, and when it holds the official number of
records (60,000 / 10,000 for MNIST-type, 10,000 per CIFAR batch, 50,000 CIFAR-100 train) it
claims to be the official file, so its MD5 must match torchvision's. Files with other record
counts (the tiny files the tests generate, subsets) get the structural checks only, and so do
uncompressed IDX files (torchvision publishes MD5s of the ``.gz`` archives only).
"""
from __future__ import annotations

import functools
import gzip
import hashlib
import os
import pickle
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

ENV_VAR = "FORGETBENCH_DATA"


class DataNotFoundError(FileNotFoundError):
    """The dataset files are not under the data root."""


class DataIntegrityError(ValueError):
    """A dataset file is there but is not what it should be (truncated, corrupt, swapped, modified).

    The one place the message is built: the file, the problem, what was expected, what was found, the fix.
    """

    def __init__(self, path: os.PathLike | str, problem: str, expected: str, found: str):
        self.path, self.problem, self.expected, self.found = Path(path), problem, expected, found
        super().__init__(
            f"{path}: {problem}: expected {expected}; found {found}.\n"
            f"Fix: delete this file and load again with data.download=true (torchvision fetches "
            f"a fresh copy; data.root must be writable), or restore the file from the original distribution."
        )


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
    classes: int = 10
    official_counts: tuple[int, ...] = ()  # records per file in the official distribution (same order as files)


_MNIST_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
_MNIST_COUNTS = (60000, 60000, 10000, 10000)
SPECS = {
    "mnist": _Spec("MNIST/raw", _MNIST_FILES, "MNIST", (0.1307,), (0.3081,), 10, _MNIST_COUNTS),
    "fashion_mnist": _Spec("FashionMNIST/raw", _MNIST_FILES, "FashionMNIST", (0.2860,), (0.3530,), 10,
                           _MNIST_COUNTS),
    "cifar10": _Spec(
        "cifar-10-batches-py",
        tuple(f"data_batch_{i}" for i in range(1, 6)) + ("test_batch",),
        "CIFAR10", (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616), 10, (10000,) * 6,
    ),
    "cifar100": _Spec(
        "cifar-100-python", ("train", "test"), "CIFAR100",
        (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762), 100, (50000, 10000),
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
        paths = [_existing(folder, f) for f in spec.files]
        arrays = [_read_idx(path, name, "labels" in stem, count)
                  for path, stem, count in zip(paths, spec.files, spec.official_counts)]
        for (x_path, y_path), x, y in zip((paths[:2], paths[2:]), arrays[::2], arrays[1::2]):
            if len(y) != len(x):
                raise DataIntegrityError(y_path, "label count differs from the image count",
                                         f"{len(x)} labels, one per image in {x_path.name}", f"{len(y)} labels")
            _check_label_range(y_path, y, spec.classes)
        train_x, train_y, test_x, test_y = arrays
        train_x, test_x = train_x[:, None], test_x[:, None]
    else:
        paths = [folder / f for f in spec.files]
        batches = [_read_cifar(p, name, count) for p, count in zip(paths, spec.official_counts)]
        train_x = np.concatenate([x for x, _ in batches[:-1]]).reshape(-1, 3, 32, 32)
        train_y = np.concatenate([y for _, y in batches[:-1]])
        test_x, test_y = batches[-1][0].reshape(-1, 3, 32, 32), batches[-1][1]
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


# ---- integrity checks ---------------------------------------------------------------------------

_IDX_DTYPES = {0x08: "uint8", 0x09: "int8", 0x0B: "int16", 0x0C: "int32", 0x0D: "float32", 0x0E: "float64"}


@functools.lru_cache(maxsize=1)
def _official_md5s() -> dict[tuple[str, str], str]:
    """``(dataset, file name) -> MD5`` of the official files, read from torchvision ({} without it)."""
    try:
        import torchvision.datasets as tvd
    except Exception:  # noqa: BLE001 - no torchvision: structural checks only
        return {}
    table = {}
    for name, spec in SPECS.items():
        cls = getattr(tvd, spec.torchvision_class, None)
        entries = [*getattr(cls, "resources", ()), *getattr(cls, "train_list", ()), *getattr(cls, "test_list", ())]
        for entry in entries:
            filename, md5 = entry[0], entry[1]
            table[(name, os.path.basename(filename))] = md5  # (old torchvision lists URLs)
    return table


_MD5_CACHE: dict[tuple[str, int, int], str] = {}


def _md5(path: Path, raw: bytes) -> str:
    """MD5 of ``raw`` (the bytes of ``path``), once per path, mtime and size in this process."""
    st = path.stat()
    key = (str(path), st.st_mtime_ns, st.st_size)
    if key in _MD5_CACHE:
        return _MD5_CACHE[key]
    md5 = hashlib.md5(raw).hexdigest()
    if st.st_size == len(raw):  # not rewritten between the read and the stat
        _MD5_CACHE[key] = md5
    return md5


def _checksum(path: Path, raw: bytes, dataset: str) -> tuple[str, str] | None:
    """``(found, official)`` MD5s for a file with an official name, or None when torchvision knows none.

    A byte copy of a *different* official file (test labels over train labels, Fashion-MNIST in
    MNIST's folder) is an error right away; a plain mismatch is judged by the caller once it knows
    whether the file holds the official number of records.
    """
    table = _official_md5s()
    official = table.get((dataset, path.name))
    if official is None:
        return None
    found = _md5(path, raw)
    if found != official:
        for (other_set, other_file), md5 in table.items():
            if md5 == found:
                raise DataIntegrityError(
                    path, "this is a different dataset file",
                    f"the official {SPECS[dataset].torchvision_class} {path.name} (MD5 {official})",
                    f"a byte copy of the official {SPECS[other_set].torchvision_class} {other_file} (MD5 {found})")
    return found, official


def _check_official(path: Path, sums: tuple[str, str] | None, dataset: str, count: int, official_count: int) -> None:
    """A file holding the official number of records claims to be the official file: its MD5 must match."""
    if sums is not None and sums[0] != sums[1] and count == official_count:
        source = "resources" if path.suffix == ".gz" else "train_list/test_list"
        raise DataIntegrityError(
            path, f"checksum mismatch with the official file ({count} records, the official count, "
                  f"but not the official bytes: a damaged or modified copy)",
            f"MD5 {sums[1]} (torchvision's {SPECS[dataset].torchvision_class}.{source})", f"MD5 {sums[0]}")


def _read_idx(path: Path, dataset: str = "", labels: bool = False, official_count: int = -1) -> np.ndarray:
    """Read and check an IDX file (optionally gzipped): magic, big-endian sizes, then raw uint8."""
    raw = path.read_bytes()
    sums = _checksum(path, raw, dataset)
    data = raw
    if path.suffix == ".gz":
        try:
            data = gzip.decompress(raw)
        except EOFError as error:
            raise DataIntegrityError(path, "truncated gzip archive", "a complete gzip stream",
                                     f"the data ends early ({len(raw)} bytes; EOFError: {error})") from None
        except (gzip.BadGzipFile, zlib.error, OSError) as error:
            raise DataIntegrityError(path, "corrupt gzip archive", "a valid gzip stream",
                                     f"{type(error).__name__}: {error}") from None
    ndim, kind = (1, "labels") if labels else (3, "images")
    magic = 0x0800 | ndim
    if len(data) < 4 or int.from_bytes(data[:4], "big") != magic:
        found = f"only {len(data)} bytes" if len(data) < 4 else f"0x{int.from_bytes(data[:4], 'big'):08X}"
        if len(data) >= 4 and data[:2] == b"\x00\x00" and data[2] in _IDX_DTYPES:
            what = {1: ": a labels file", 3: ": an images file"}.get(data[3], "") if data[2] == 0x08 else ""
            found += f" ({_IDX_DTYPES[data[2]]}, {data[3]} dimensions{what})"
        raise DataIntegrityError(path, "wrong IDX magic number",
                                 f"0x{magic:08X} (uint8 {kind}, {ndim} dimension{'s' * (ndim > 1)})", found)
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataIntegrityError(path, "truncated IDX header", f"{header} header bytes", f"{len(data)} bytes")
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    if shape[0] < 1 or (not labels and shape[1:] != (28, 28)):
        raise DataIntegrityError(path, "wrong IDX dimensions",
                                 "N labels (N >= 1)" if labels else "N x 28 x 28 images (N >= 1)",
                                 " x ".join(map(str, shape)))
    expected = int(np.prod(shape))
    if len(data) - header != expected:
        raise DataIntegrityError(
            path, "IDX payload length does not match its header",
            f"{expected} bytes after the {header}-byte header ({' x '.join(map(str, shape))} uint8)",
            f"{len(data) - header} bytes")
    _check_official(path, sums, dataset, shape[0], official_count)
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(shape)


def _check_label_range(path: Path, labels: np.ndarray, classes: int) -> None:
    bad = np.flatnonzero((labels < 0) | (labels >= classes))
    if len(bad):
        raise DataIntegrityError(
            path, "labels out of range", f"labels 0..{classes - 1}",
            f"{len(bad)} label{'s' * (len(bad) > 1)} outside it (min {labels.min()}, max {labels.max()}; "
            f"first at index {bad[0]})")


def _read_cifar(path: Path, dataset: str, official_count: int = -1) -> tuple[np.ndarray, np.ndarray]:
    """Read and check one CIFAR pickle: ``b"data"`` N x 3072 uint8 and one label per row in range."""
    spec = SPECS[dataset]
    key = b"labels" if dataset == "cifar10" else b"fine_labels"
    raw = path.read_bytes()
    sums = _checksum(path, raw, dataset)
    try:
        batch = pickle.loads(raw, encoding="bytes")
    except Exception as error:  # noqa: BLE001 - any unpickling failure is a damaged file
        raise DataIntegrityError(path, "unreadable pickle", f"a {spec.torchvision_class} python pickle",
                                 f"{type(error).__name__}: {error}") from None
    if not isinstance(batch, dict) or not {b"data", key} <= set(batch):
        found = f"keys {sorted(batch, key=repr)}" if isinstance(batch, dict) else f"a {type(batch).__name__}"
        raise DataIntegrityError(path, "wrong pickle contents", f"a dict with keys {[b'data', key]}", found)
    x = batch[b"data"]
    if not isinstance(x, np.ndarray) or x.dtype != np.uint8 or x.ndim != 2 or x.shape[1] != 3072 or len(x) < 1:
        found = f"{x.dtype} array of shape {x.shape}" if isinstance(x, np.ndarray) else f"a {type(x).__name__}"
        raise DataIntegrityError(path, "wrong b'data' array",
                                 "an N x 3072 uint8 array (N >= 1 images of 3 x 32 x 32)", found)
    try:
        y = np.asarray(batch[key])
    except Exception:  # noqa: BLE001 - ragged or odd objects
        y = None
    if y is None or y.ndim != 1 or (len(y) and y.dtype.kind not in "iu"):
        found = f"a {type(batch[key]).__name__}" + (f" ({y.dtype}, shape {y.shape})" if y is not None else "")
        raise DataIntegrityError(path, f"wrong {key!r} labels", "a flat list of integer labels", found)
    if len(y) != len(x):
        raise DataIntegrityError(path, "label count differs from the image count",
                                 f"{len(x)} labels, one per row of b'data'", f"{len(y)} labels in {key!r}")
    _check_label_range(path, y, spec.classes)
    _check_official(path, sums, dataset, len(x), official_count)
    return x, y
