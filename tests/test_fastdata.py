"""The tensor data path draws the batches Avalanche's loaders would, minus the per-sample work."""
from collections import Counter

import pytest
import torch
from avalanche.benchmarks.utils.data_loader import ReplayDataLoader

from forgetbench.benchmarks import streams
from forgetbench.benchmarks.data import load_dataset
from forgetbench.benchmarks.fastdata import TensorBatches, TensorMultiBatches


@pytest.fixture(scope="module")
def bench(mnist_root):
    s = streams.split_stream(load_dataset("mnist", mnist_root), 5, "class", max_train_per_exp=100,
                             max_test_per_exp=10)
    return s, s.benchmark()


def _ids_of(s, x, y):
    """Recover table ids of a batch by matching images (all distinct in MNIST)."""
    table = s.table.images[s.table.source].flatten(1)
    return [int((table == row).all(1).nonzero()[0]) for row in x.flatten(1)]


def test_tensor_batches_cover_each_sample_once(bench):
    s, _ = bench
    ids = s.train_ids[2]
    batches = list(TensorBatches(s.table, ids, 32, shuffle=True, generator=torch.Generator().manual_seed(0)))
    assert [len(b[0]) for b in batches] == [32, 32, 32, 4]
    seen = torch.cat([b[1] for b in batches])
    assert sorted(_ids_of(s, torch.cat([b[0] for b in batches]), seen)) == ids.tolist()


@pytest.mark.parametrize("memory_size,oversample", [(40, True), (40, False), (100, True)])
def test_replay_batches_follow_avalanche_replay_loader(bench, memory_size, oversample):
    s, bm = bench
    data = bm.train_stream[1].dataset
    memory = bm.train_stream[0].dataset.subset(range(memory_size))
    reference = ReplayDataLoader(data, memory, oversample_small_tasks=oversample, batch_size=16,
                                 batch_size_mem=8, shuffle=True)
    fast = TensorMultiBatches.from_avalanche(reference, torch.Generator().manual_seed(0))
    assert fast is not None and len(fast) == len(reference)
    ours, theirs = list(fast), list(reference)
    assert [len(b[0]) for b in ours] == [len(b[0]) for b in theirs]
    ours_ids = [_ids_of(s, b[0], b[1]) for b in ours]
    data_ids, memory_ids = set(s.train_ids[1].tolist()), set(s.train_ids[0][:memory_size].tolist())
    current = Counter(i for batch in ours_ids for i in batch if i in data_ids)
    assert set(current) == data_ids and set(current.values()) == {1}  # the epoch: all current data once
    replayed = [i for batch in ours_ids for i in batch if i not in data_ids]
    assert set(replayed) <= memory_ids
    if memory_size == 100:  # 7 steps x 8 < 100: one pass through the buffer, no sample twice
        assert len(set(replayed)) == len(replayed)


def test_not_table_backed_keeps_avalanche(bench):
    from avalanche.benchmarks.utils import AvalancheDataset

    class Plain(torch.utils.data.Dataset):
        def __len__(self):
            return 4

        def __getitem__(self, i):
            return torch.zeros(1), 0

    plain = AvalancheDataset([Plain()])
    reference = ReplayDataLoader(plain, plain, batch_size=2, batch_size_mem=2)
    assert TensorMultiBatches.from_avalanche(reference) is None
