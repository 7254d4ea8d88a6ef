"""The tensor-resident data path: whole batches gathered by index from a :class:`SampleTable`.

Avalanche's own loaders fetch and collate one sample at a time. ``with_fast_data(cls)`` gives
any Avalanche strategy class loaders that slice batches straight out of the table, on the
run's device, so no data crosses from host to device per batch:
- its train and eval loaders become :class:`TensorBatches`;
- a multi-dataset loader a plugin installs (the replay loader: current data + buffer) becomes
  :class:`TensorMultiBatches`, which draws batches with the same rules as Avalanche's sampler;
- anything else a plugin builds from our datasets (EWC's importance pass) is a torch
  DataLoader, which fetches whole batches through ``TableDataset.__getitems__``.
Datasets not built from a table keep Avalanche's loaders unchanged.

Training augmentation (``stream.augment``, kept on the table): the mixin applies it to every training
minibatch the strategy forwards, on the device, in one vectorized call (:func:`crop_flip`), after the
strategy's plugins have joined their replayed samples (ER's loader); DER and sleep_cls forward their
replayed batches on their own and augment them through :func:`augmented`, and buffer the batch as it
came in (:func:`unaugmented`). Current and replayed samples alike get a fresh crop and flip at every
step, as in Mammoth (its buffers store un-augmented inputs and apply the training transform to every
replayed batch, utils/buffer.py ``get_data(transform=)``). Evaluation, and whatever a strategy
computes outside its training forward (EWC's importances, a buffer batch a strategy forwards by itself
such as ER-ACE's), see the images as they are.
The random draws come from their own generator, seeded from the run's seed: the batch order is the
same with and without augmentation.
"""
from __future__ import annotations

import functools
import math

import numpy as np
import torch

from forgetbench.benchmarks.streams import SampleTable, dataset_table, sample_ids

AUGMENT_SEED_TAG = 0xA06  # keeps the augmentation's random stream apart from the batch order's


def crop_flip(x: torch.Tensor, fill: torch.Tensor | None, generator: torch.Generator | None = None,
              padding: int = 4) -> torch.Tensor:
    """Per sample, a random crop of ``x`` (N x C x H x W) padded by ``padding`` pixels of ``fill`` (C values;
    None: 0), then a horizontal flip with probability 0.5: torchvision's ``RandomCrop(H, padding)`` +
    ``RandomHorizontalFlip()`` for the whole batch at once (two gathers, no per-sample loop, no host sync).
    Offsets are uniform in 0..2*padding per axis, as torchvision draws them. Returns a new tensor."""
    n, c, h, w = x.shape
    p, device = int(padding), x.device
    offsets = torch.randint(0, 2 * p + 1, (2, n), generator=generator, device=device)
    flip = torch.randint(0, 2, (n, 1), generator=generator, device=device).bool()
    padded = (torch.zeros(c, dtype=x.dtype, device=device) if fill is None else fill.to(device, x.dtype))
    padded = padded.view(1, c, 1, 1).expand(n, c, h + 2 * p, w + 2 * p).clone()
    padded[:, :, p:p + h, p:p + w] = x
    rows = offsets[0, :, None] + torch.arange(h, device=device)  # n x h
    columns = torch.arange(w, device=device).expand(n, w)
    columns = torch.where(flip, w - 1 - columns, columns) + offsets[1, :, None]  # n x w; flipped: read right to left
    out = padded.gather(2, rows[:, None, :, None].expand(n, c, h, w + 2 * p))
    return out.gather(3, columns[:, None, None, :].expand(n, c, h, w))


AUGMENTATIONS = {"crop_flip": crop_flip}  # streams.AUGMENTATIONS names these


def augment_seed(seed: int) -> int:
    """The augmentation generator's seed for a run seeded with ``seed``."""
    return int(np.random.SeedSequence([int(seed), AUGMENT_SEED_TAG]).generate_state(1)[0])


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


class TensorMultiBatches:
    """Batches joining ``batch_sizes[k]`` samples of each dataset k, as Avalanche's
    ``MultiDatasetDataLoader`` (e.g. the replay loader) draws them: the epoch ends with the
    ``termination`` dataset; the others restart, reshuffled, when used up (``oversample``) or
    drop out. All positions of an epoch are drawn up front and sent to the device at once."""

    def __init__(self, table: SampleTable, ids: list[torch.Tensor], batch_sizes: list[int], termination: int,
                 oversample: bool, shuffle: bool = True, generator: torch.Generator | None = None):
        self.table, self.batch_sizes = table, batch_sizes
        self.ids = [i.to(table.device) for i in ids]
        self.termination, self.oversample, self.shuffle, self.generator = termination, oversample, shuffle, generator

    def __len__(self) -> int:
        return math.ceil(len(self.ids[self.termination]) / self.batch_sizes[self.termination])

    def _order(self, n: int) -> torch.Tensor:
        return torch.randperm(n, generator=self.generator) if self.shuffle else torch.arange(n)

    def _chunks(self, k: int, steps: int) -> list[torch.Tensor | None]:
        """Positions dataset k contributes to each step (None once it has dropped out)."""
        n, size, chunks = len(self.ids[k]), self.batch_sizes[k], []
        while len(chunks) < steps and n:
            chunks += list(self._order(n).split(size))
            if k != self.termination and not self.oversample:
                break
        return (chunks + [None] * steps)[:steps]

    def __iter__(self):
        steps = len(self)
        offsets = torch.tensor([0] + [len(i) for i in self.ids]).cumsum(0)
        per_dataset = [self._chunks(k, steps) for k in range(len(self.ids))]
        batches = [torch.cat([c[s] + offsets[k] for k, c in enumerate(per_dataset) if c[s] is not None])
                   for s in range(steps)]
        flat = torch.cat(self.ids)[torch.cat(batches).to(self.table.device)]  # one copy per epoch
        for batch in flat.split([len(b) for b in batches]):
            yield list(self.table.gather(batch))

    @classmethod
    def from_avalanche(cls, loader, generator=None):
        """The equivalent of an Avalanche ``MultiDatasetDataLoader``, or None if there is none."""
        tables = {id(dataset_table(d)) for d in loader.datasets}
        ids = [sample_ids(d) for d in loader.datasets]
        if (len(tables) != 1 or dataset_table(loader.datasets[0]) is None or any(i is None for i in ids)
                or loader.never_ending or loader.distributed_sampling):
            return None
        return cls(dataset_table(loader.datasets[0]), ids, loader.batch_sizes, loader.termination_dataset,
                   loader.oversample_small_datasets, loader.loader_kwargs.get("shuffle", True), generator)


class FastDataMixin:
    """Replaces the strategy's loaders with tensor batches (see the module docstring).

    ``data_generator`` sets the shuffling order; ``fast_data = False`` turns the path off.
    Difference from Avalanche's default train loader: one shuffled loader over all samples
    instead of a task-balanced one (identical when an experience has one task).
    """

    fast_data: bool = True
    data_generator: torch.Generator | None = None
    augment_generator: torch.Generator | None = None  # made on first use (see augment)
    unaugmented_x: torch.Tensor | None = None  # the training minibatch before its augmentation

    def _fast(self, shuffle: bool, batch_size: int, drop_last: bool = False):
        table = dataset_table(self.adapted_dataset)
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
        from avalanche.benchmarks.utils.data_loader import MultiDatasetDataLoader

        if self.fast_data and isinstance(self.dataloader, MultiDatasetDataLoader):
            self.dataloader = TensorMultiBatches.from_avalanche(self.dataloader, self.data_generator) \
                or self.dataloader

    def _before_forward(self, **kwargs):
        super()._before_forward(**kwargs)  # plugins first (e.g. the replay loader's samples are joined)
        self._augment()

    def _augment(self) -> None:
        """Augment the minibatch about to be forwarded (training only: Avalanche's evaluation loop calls
        ``_before_eval_forward`` instead)."""
        self.unaugmented_x = self.mbatch[0]
        self.mbatch[0] = self.augment(self.mbatch[0])

    def augment(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` with the table's training augmentation applied (``x`` itself if it has none); a strategy
        that forwards a replayed batch on its own (DER) augments it with this."""
        table = dataset_table(getattr(self, "adapted_dataset", None))
        if table is None or table.augment is None:
            return x
        generator = self.augment_generator
        if generator is None or generator.device != x.device:
            seed = self.data_generator.initial_seed() if self.data_generator is not None else torch.initial_seed()
            generator = self.augment_generator = torch.Generator(device=x.device).manual_seed(augment_seed(seed))
        return AUGMENTATIONS[table.augment](x, table.fill, generator)

    def make_eval_dataloader(self, num_workers=0, shuffle=False, pin_memory=None,
                             persistent_workers=False, **kwargs):
        loader = self._fast(False, self.eval_mb_size)
        if loader is None:
            return super().make_eval_dataloader(num_workers=num_workers, shuffle=shuffle, pin_memory=False,
                                                persistent_workers=persistent_workers, **kwargs)
        self.dataloader = loader


def augmented(strategy, x: torch.Tensor) -> torch.Tensor:
    """``x`` with the strategy's training augmentation (:meth:`FastDataMixin.augment`), if it has one: for
    replayed batches a strategy forwards on its own (DER, sleep_cls)."""
    augment = getattr(strategy, "augment", None)
    return augment(x) if augment is not None else x


def unaugmented(strategy) -> torch.Tensor:
    """The training minibatch as it came in, before the augmentation ``mb_x`` went through: what a buffer
    keeps (Mammoth's ``not_aug_inputs``)."""
    x = getattr(strategy, "unaugmented_x", None)
    return strategy.mb_x if x is None else x


@functools.cache
def with_fast_data(strategy_cls: type) -> type:
    """``strategy_cls`` with :class:`FastDataMixin` in front (cached: one subclass per class)."""
    if issubclass(strategy_cls, FastDataMixin):
        return strategy_cls
    return type(strategy_cls.__name__, (FastDataMixin, strategy_cls), {"__module__": strategy_cls.__module__})
