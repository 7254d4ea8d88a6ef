"""The tensor-resident data path: whole batches gathered by index from a :class:`SampleTable`.

Avalanche's own loaders fetch and collate one sample at a time. ``with_fast_data(cls)`` gives
any Avalanche strategy class train/eval loaders that slice batches straight out of the table
(on the run's device, so no host-to-device copy per batch). Datasets not built from a table fall
back to Avalanche's loaders unchanged. Loaders that plugins build themselves (the replay loader,
EWC's importance pass) are torch DataLoaders over our datasets, which fetch whole batches
through ``TableDataset.__getitems__`` (benchmarks/streams.py).
"""
from __future__ import annotations

import functools

import torch

from benchmarks.streams import GatheredBatch, SampleTable, sample_ids


class TensorBatches:
    """Iterate ``[x, y, t]`` batches of the samples ``ids`` of ``table``."""

    def __init__(self, table: SampleTable, ids: torch.Tensor, batch_size: int, shuffle: bool,
                 generator: torch.Generator | None = None, drop_last: bool = False):
        self.table, self.ids = table, ids.to(table.device)
        self.batch_size, self.shuffle, self.generator, self.drop_last = batch_size, shuffle, generator, drop_last

    def __len__(self) -> int:
        n = len(self.ids)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def __iter__(self):
        ids = self.ids
        if self.shuffle:
            ids = ids[torch.randperm(len(ids), generator=self.generator).to(ids.device)]
        for i in range(len(self)):
            yield list(self.table.gather(ids[i * self.batch_size : (i + 1) * self.batch_size]))


class FastDataMixin:
    """Replaces the strategy's train/eval loaders with :class:`TensorBatches`.

    ``data_generator`` sets the shuffling order; ``fast_data = False`` turns the path off.
    Difference from Avalanche's default train loader: one shuffled loader over all samples
    instead of a task-balanced one (identical when an experience has one task).
    """

    fast_data: bool = True
    data_generator: torch.Generator | None = None

    def _fast(self, shuffle: bool, batch_size: int, drop_last: bool = False):
        table: SampleTable | None = getattr(type(self.adapted_dataset), "table", None)
        ids = sample_ids(self.adapted_dataset) if (self.fast_data and table is not None) else None
        if ids is None:
            return None
        return TensorBatches(table, ids, batch_size, shuffle, self.data_generator, drop_last)

    def make_train_dataloader(self, num_workers=0, shuffle=True, pin_memory=None,
                              persistent_workers=False, drop_last=False, **kwargs):
        loader = self._fast(shuffle, self.train_mb_size, drop_last)
        if loader is None:
            return super().make_train_dataloader(num_workers=num_workers, shuffle=shuffle, pin_memory=False,
                                                 persistent_workers=persistent_workers, drop_last=drop_last,
                                                 **kwargs)
        self.dataloader = loader

    def _before_training_exp(self, **kwargs):
        super()._before_training_exp(**kwargs)  # plugins (e.g. replay) may swap the loader here
        if self.fast_data:
            self.dataloader = fast_multi_loader(self.dataloader)

    def make_eval_dataloader(self, num_workers=0, shuffle=False, pin_memory=None,
                             persistent_workers=False, **kwargs):
        loader = self._fast(False, self.eval_mb_size)
        if loader is None:
            return super().make_eval_dataloader(num_workers=num_workers, shuffle=shuffle, pin_memory=False,
                                                persistent_workers=persistent_workers, **kwargs)
        self.dataloader = loader


class _TableConcat(torch.utils.data.ConcatDataset):
    """ConcatDataset of table-backed datasets that fetches whole batches from the table."""

    def __init__(self, datasets, table: SampleTable, ids: torch.Tensor):
        super().__init__(datasets)
        self.table, self.ids = table, ids

    def __getitems__(self, indices):
        return GatheredBatch(self.table.gather(self.ids[torch.as_tensor(indices, dtype=torch.long)]))


def _make_table_loader(self, datasets, batch_sampler):
    """``MultiDatasetDataLoader._make_pytorch_loader`` with batched fetching (same sampler)."""
    from avalanche.benchmarks.utils.data_loader import _make_data_loader_with_batched_sampler

    ids = [sample_ids(d) for d in datasets]
    tables = {id(getattr(type(d), "table", None)) for d in datasets}
    if any(i is None for i in ids) or len(tables) != 1:
        return super(type(self), self)._make_pytorch_loader(datasets, batch_sampler)
    concat = _TableConcat(datasets, type(datasets[0]).table, torch.cat(ids))
    return _make_data_loader_with_batched_sampler(concat, batch_sampler=batch_sampler,
                                                  data_loader_args=self.loader_kwargs)


@functools.cache
def _fast_multi_loader_class(cls: type) -> type:
    return type(cls.__name__, (cls,), {"_make_pytorch_loader": _make_table_loader, "_fast_fetch": True})


def fast_multi_loader(loader):
    """Give an Avalanche multi-dataset loader (e.g. the replay loader) batched fetching; it keeps
    Avalanche's own batch sampler, so which samples form a batch is unchanged."""
    from avalanche.benchmarks.utils.data_loader import MultiDatasetDataLoader

    if isinstance(loader, MultiDatasetDataLoader) and not hasattr(type(loader), "_fast_fetch"):
        loader.__class__ = _fast_multi_loader_class(type(loader))
    return loader


@functools.cache
def with_fast_data(strategy_cls: type) -> type:
    """``strategy_cls`` with :class:`FastDataMixin` in front (cached: one subclass per class)."""
    if issubclass(strategy_cls, FastDataMixin):
        return strategy_cls
    return type(strategy_cls.__name__, (FastDataMixin, strategy_cls), {"__module__": strategy_cls.__module__})
