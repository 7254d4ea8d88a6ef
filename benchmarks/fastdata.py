"""The tensor-resident data path: whole batches gathered by index from a :class:`SampleTable`.

Avalanche's own loaders fetch and collate one sample at a time. ``with_fast_data(cls)`` gives
any Avalanche strategy class loaders that slice batches straight out of the table (on the run's
device, so no host-to-device copy per batch). Datasets that do not come from the table (no
``sample_id`` attribute) fall back to Avalanche's loaders unchanged, as does anything a plugin
builds itself (e.g. the replay loader, or EWC's importance pass).
"""
from __future__ import annotations

import functools

import torch

from benchmarks.streams import SampleTable


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


def sample_ids(dataset) -> torch.Tensor | None:
    """The table ids of an Avalanche dataset's samples, or None if it is not table-backed."""
    attribute = getattr(dataset, "sample_id", None)
    if attribute is None or len(attribute) != len(dataset):
        return None
    return torch.as_tensor(list(attribute), dtype=torch.long)


class FastDataMixin:
    """Replaces the strategy's train/eval loaders with :class:`TensorBatches`.

    Set ``sample_table`` (and optionally ``data_generator``, for the shuffling order) before
    training. Differences from Avalanche's default train loader: one shuffled loader over all
    samples instead of a task-balanced one (identical when an experience has one task).
    """

    sample_table: SampleTable | None = None
    data_generator: torch.Generator | None = None

    def _fast(self, shuffle: bool, batch_size: int, drop_last: bool = False):
        ids = sample_ids(self.adapted_dataset) if self.sample_table is not None else None
        if ids is None:
            return None
        return TensorBatches(self.sample_table, ids, batch_size, shuffle, self.data_generator, drop_last)

    def make_train_dataloader(self, num_workers=0, shuffle=True, pin_memory=None,
                              persistent_workers=False, drop_last=False, **kwargs):
        loader = self._fast(shuffle, self.train_mb_size, drop_last)
        if loader is None:
            return super().make_train_dataloader(num_workers=num_workers, shuffle=shuffle, pin_memory=False,
                                                 persistent_workers=persistent_workers, drop_last=drop_last,
                                                 **kwargs)
        self.dataloader = loader

    def make_eval_dataloader(self, num_workers=0, shuffle=False, pin_memory=None,
                             persistent_workers=False, **kwargs):
        loader = self._fast(False, self.eval_mb_size)
        if loader is None:
            return super().make_eval_dataloader(num_workers=num_workers, shuffle=shuffle, pin_memory=False,
                                                persistent_workers=persistent_workers, **kwargs)
        self.dataloader = loader


@functools.cache
def with_fast_data(strategy_cls: type) -> type:
    """``strategy_cls`` with :class:`FastDataMixin` in front (cached: one subclass per class)."""
    if issubclass(strategy_cls, FastDataMixin):
        return strategy_cls
    return type(strategy_cls.__name__, (FastDataMixin, strategy_cls), {"__module__": strategy_cls.__module__})
