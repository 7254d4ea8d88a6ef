"""Shared test helpers: the data root, tiny generated datasets, composing the real config."""
from __future__ import annotations

import contextlib
import gzip
import itertools
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
from omegaconf import OmegaConf

from forgetbench import compose
from forgetbench.benchmarks import schema
from forgetbench.strategies.registry import list_strategies, unregister_strategy

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("FORGETBENCH_DATA", REPO.parent / "shared" / "data")).resolve()
TINY = ["stream.max_train_per_exp=48", "stream.max_test_per_exp=24", "progress=false", "device=cpu",
        "batch_size=16", "threads=1"]


def compose_cfg(overrides=(), root: Path | str = DATA, **kwargs):
    """The real config, as the CLI composes it, reading data from ``root``: the one place tests compose."""
    return compose([f"data.root={root}", *overrides], **kwargs)


def preset_sweep(preset: str) -> list[tuple[dict, list[int]]]:
    """The configs ``forgetbench -m experiment=<preset>`` runs, for its first seed, with the seeds it sweeps:
    its sweeper params expanded, each composed as the CLI would and folded as a run records it
    (``per_strategy`` merged into ``strategy``)."""
    params = dict(compose_cfg([f"experiment={preset}"], return_hydra_config=True).hydra.sweeper.params)
    seeds = [int(s) for s in str(params.pop("seed")).split(",")]
    keys, values = list(params), [str(v).split(",") for v in params.values()]
    out = []
    for combination in itertools.product(*values):
        cfg = compose_cfg([f"experiment={preset}", f"seed={seeds[0]}", *(f"{k}={v}" for k, v in zip(keys, combination))])
        out.append((schema.fold_per_strategy(OmegaConf.to_container(cfg, resolve=True)), seeds))
    return out


@pytest.fixture
def tiny_cfg():
    """``tiny_cfg(*overrides)``: a config for a tiny stream (48 training samples per experience) on the CPU."""
    return lambda *overrides, root=DATA: compose_cfg([*TINY, *overrides], root)


@contextlib.contextmanager
def restoring_registry():
    """Strategies registered inside the block are removed (with their Hydra options) when it ends."""
    before = set(list_strategies())
    try:
        yield
    finally:
        for name in set(list_strategies()) - before:
            unregister_strategy(name)


@pytest.fixture
def clean_registry():
    """Strategies registered during the test are removed afterwards (no order dependence between tests)."""
    with restoring_registry():
        yield


@pytest.fixture
def trained(mnist_root, tiny_cfg):
    """``trained(*overrides) -> (strategy, classes)``: the strategy the harness builds, trained on the first
    experience of the tiny stream, and that experience's classes."""

    def train(*overrides):
        strategy, stream, _ = train_first_experience(tiny_cfg(*overrides))
        return strategy, set(stream.classes[0])  # class-IL: the labels are the classes

    return train


def train_first_experience(cfg):
    """(strategy, stream, experience): the strategy the harness builds for ``cfg`` on the CPU, trained on
    the stream's first experience."""
    import torch

    from forgetbench.benchmarks.experiment import _build, build_strategy, seed_everything, validate

    info = validate(cfg)
    seed_everything(cfg.seed)
    stream = _build(cfg.stream)
    model = _build(cfg.model, input_shape=stream.input_shape, num_outputs=stream.num_outputs,
                   num_heads=stream.num_heads)
    strategy = build_strategy(cfg, info, model, stream, torch.device("cpu"), [])
    experience = stream.benchmark().train_stream[0]
    strategy.train(experience, eval_streams=[])
    return strategy, stream, experience


@pytest.fixture(scope="session")
def mnist_root() -> Path:
    if not (DATA / "MNIST" / "raw").is_dir():
        pytest.fail(f"real MNIST not found under {DATA}; set FORGETBENCH_DATA to a folder holding MNIST/raw")
    return DATA


def write_idx(path: Path, array: np.ndarray) -> None:
    """An IDX file: 0x0000, dtype 0x08 (uint8), ndim, big-endian sizes, raw bytes; gzipped."""
    header = bytes([0, 0, 8, array.ndim]) + b"".join(int(s).to_bytes(4, "big") for s in array.shape)
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def make_tiny_mnist(root: Path, folder: str = "MNIST", n_train: int = 60, n_test: int = 30, seed: int = 0):
    rng = np.random.default_rng(seed)
    arrays = {}
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        x = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        y = np.arange(n) % 10
        write_idx(root / folder / "raw" / f"{prefix}-images-idx3-ubyte.gz", x)
        write_idx(root / folder / "raw" / f"{prefix}-labels-idx1-ubyte.gz", y)
        arrays[prefix] = (x, y)
    return arrays


def make_tiny_cifar(root: Path, classes: int = 10, per_batch: int = 20, n_test: int = 20, seed: int = 0):
    """CIFAR-10 (5 data batches + test_batch) or CIFAR-100 (train + test) pickles, real layout."""
    rng = np.random.default_rng(seed)
    key = b"labels" if classes == 10 else b"fine_labels"

    def dump(path: Path, n: int):
        path.parent.mkdir(parents=True, exist_ok=True)
        batch = {b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8), key: list(np.arange(n) % classes)}
        with open(path, "wb") as f:
            pickle.dump(batch, f)
        return batch

    if classes == 10:
        train = [dump(root / "cifar-10-batches-py" / f"data_batch_{i}", per_batch) for i in range(1, 6)]
        return train, dump(root / "cifar-10-batches-py" / "test_batch", n_test)
    return [dump(root / "cifar-100-python" / "train", per_batch * 5)], dump(root / "cifar-100-python" / "test", n_test)


@pytest.fixture(scope="session")
def tiny_root(tmp_path_factory) -> Path:
    """A data root holding tiny generated MNIST, Fashion-MNIST, CIFAR-10 and CIFAR-100 files."""
    root = tmp_path_factory.mktemp("tiny_data")
    make_tiny_mnist(root, "MNIST")
    make_tiny_mnist(root, "FashionMNIST", seed=1)
    make_tiny_cifar(root, 10)
    make_tiny_cifar(root, 100, per_batch=40, n_test=100)
    return root


def tiny_run(tmp_path, strategy: str, scenario: str, extra=()) -> dict:
    """The record of a full run of ``strategy`` on the tiny Split-MNIST stream (64 training images per
    experience, 2 epochs), written under ``tmp_path / "run"``."""
    from forgetbench.benchmarks.experiment import run

    overrides = [f"strategy={strategy}", f"scenario={scenario}", "stream.max_train_per_exp=64",
                 "stream.max_test_per_exp=32", "epochs=2", *extra]
    return run(compose_cfg([*TINY, *overrides]), tmp_path / "run")


def check_tiny_run(record: dict) -> None:
    """A finished :func:`tiny_run`: a full 6 x 5 matrix of accuracies that learned the first experience."""
    import torch

    acc = torch.tensor(record["accuracy_matrix"])
    assert record["status"] == "ok" and acc.shape == (6, 5)
    assert not acc[1:].isnan().any() and 0 <= record["metrics"]["acc"] <= 1
    assert acc[1, 0] > 0.5  # learned the first experience
