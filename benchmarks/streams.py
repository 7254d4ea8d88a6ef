"""Task streams built from tensors, exposed as Avalanche benchmarks.

Every sample of a stream lives in one :class:`SampleTable` on the run's device: the base
images (normalized once), and per sample the image row, the *view* (which experience's input
transform applies: a pixel permutation or a rotation), the label and the task label. Avalanche
datasets hold sample ids into that table, so every Avalanche strategy works unchanged, while
forgetbench's fast loader (``benchmarks.fastdata``) gathers whole batches by index.

Scenarios (van de Ven & Tolias 2019), valid for every stream:
- ``class``: one head over all classes seen in the stream;
- ``task``: task label = experience id, one head per experience, labels local to the experience;
- ``domain``: one head, labels local to the experience, no task labels.

Validation split (``stream.validation=<fraction>``, :func:`hold_out`): after the stream is built
(and ``max_train_per_exp`` applied: limit first, then hold out), that fraction of each experience's
training samples is held out, stratified by class, and the benchmark's evaluation stream is the
held-out part instead of the test split. Which samples are held out depends only on the seed and
the data: every strategy run with the same seed sees the same split.
"""
from __future__ import annotations

import dataclasses
import functools
import math
import warnings
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from forgetbench.benchmarks.data import Dataset, load_dataset

SCENARIOS = ("class", "task", "domain")


@dataclass
class SampleTable:
    """All samples of a stream; ``gather(ids)`` returns the batch ``(x, y, t)``."""

    images: torch.Tensor  # float32, normalized, N_base x C x H x W
    source: torch.Tensor  # long: sample -> row of ``images``
    view: torch.Tensor  # long: sample -> index into permutations / angles
    y: torch.Tensor
    t: torch.Tensor
    background: float = 0.0  # normalized value of a black pixel (rotation fill)
    permutations: torch.Tensor | None = None  # views x (C*H*W)
    angles: torch.Tensor | None = None  # views, degrees
    augment: str | None = None  # training augmentation (one of AUGMENTATIONS), applied per training batch
    #                             on the device by benchmarks.fastdata, never to evaluation
    fill: torch.Tensor | None = None  # C: normalized value of a black pixel per channel (the crop's padding)

    def gather(self, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        ids = ids.to(self.source.device)
        x = self.images[self.source[ids]]
        if self.permutations is not None:
            perm = self.permutations[self.view[ids]]
            x = x.flatten(1).gather(1, perm).view_as(x)
        if self.angles is not None:
            x = _rotate(x, self.angles[self.view[ids]], self.background)
        return x, self.y[ids], self.t[ids]

    def to(self, device: torch.device | str) -> "SampleTable":
        moved = {k: (v.to(device) if torch.is_tensor(v) else v) for k, v in vars(self).items()}
        return SampleTable(**moved)

    @property
    def device(self) -> torch.device:
        return self.images.device


def _rotate(x: torch.Tensor, degrees: torch.Tensor, background: float) -> torch.Tensor:
    rad = degrees.to(x.dtype) * (math.pi / 180)
    cos, sin, zero = rad.cos(), rad.sin(), torch.zeros_like(rad)
    theta = torch.stack([torch.stack([cos, -sin, zero], 1), torch.stack([sin, cos, zero], 1)], 1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    out = F.grid_sample(x - background, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return out + background


class _TableRows(torch.utils.data.Dataset):
    """Per-sample view of a table (what Avalanche's own loaders read)."""

    def __init__(self, table: SampleTable, ids: torch.Tensor):
        self.table, self.ids = table, ids

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int):
        x, y, _ = self.table.gather(self.ids[i : i + 1])
        return x[0], int(y[0])


@dataclass
class Stream:
    """A built stream: the table, sample ids per experience, and what the model needs."""

    name: str
    scenario: str
    table: SampleTable
    train_ids: list[torch.Tensor]
    test_ids: list[torch.Tensor]
    classes: list[list[int]]  # original classes per experience
    num_outputs: int  # outputs per head
    num_heads: int
    input_shape: tuple[int, ...]
    info: dict = field(default_factory=dict)  # class order, permutation seed, angles: recorded
    validation_ids: list[torch.Tensor] | None = None  # held-out training samples (see hold_out)

    @property
    def num_experiences(self) -> int:
        return len(self.train_ids)

    @property
    def eval_split(self) -> str:
        """What the accuracy matrix is computed on: ``"validation"`` or ``"test"``."""
        return "test" if self.validation_ids is None else "validation"

    @property
    def eval_ids(self) -> list[torch.Tensor]:
        """The sample ids evaluated per experience: the validation part when there is one, else the test split."""
        return self.test_ids if self.validation_ids is None else self.validation_ids

    def to(self, device) -> "Stream":
        self.table = self.table.to(device)
        return self

    def benchmark(self):
        """This stream as an Avalanche benchmark (``train_stream`` / ``test_stream``); ``test_stream``
        holds :attr:`eval_ids` (the validation part when the stream has one)."""
        from avalanche.benchmarks.scenarios.dataset_scenario import benchmark_from_datasets
        from avalanche.benchmarks.scenarios.supervised import with_classes_timeline
        from avalanche.benchmarks.scenarios.task_aware import with_task_labels

        bm = benchmark_from_datasets(
            train=[self._avalanche_dataset(ids) for ids in self.train_ids],
            test=[self._avalanche_dataset(ids) for ids in self.eval_ids],
        )
        return with_task_labels(with_classes_timeline(bm))

    def _avalanche_dataset(self, ids: torch.Tensor):
        from avalanche.benchmarks.utils import DataAttribute
        from avalanche.benchmarks.utils.flat_data import ConstantSequence

        if not hasattr(self, "_dataset_class"):
            self._dataset_class = table_dataset_class(self.table)
        task = self.table.t[ids[:1]].tolist() or [0]  # one task label per experience
        sample_id = DataAttribute(ids.cpu().tolist(), "sample_id")
        dataset = self._dataset_class(
            [_TableRows(self.table, ids)],
            data_attributes=[
                DataAttribute(self.table.y[ids].tolist(), "targets"),
                DataAttribute(ConstantSequence(task[0], len(ids)), "targets_task_labels", use_in_getitem=True),
                sample_id,
            ],
        )
        dataset._sample_ids = (dataset.sample_id, ids.to(self.table.device))  # what sample_ids() would compute
        return dataset


def dataset_table(dataset) -> SampleTable | None:
    """The table an Avalanche dataset was built from (see :func:`table_dataset_class`), or None."""
    return getattr(type(dataset), "table", None)


def sample_ids(dataset) -> torch.Tensor | None:
    """The table ids of an Avalanche dataset's samples (cached), or None if it has none.

    Subsets and concatenations keep the ``sample_id`` attribute when all their parts have it.
    """
    attribute = getattr(dataset, "sample_id", None)
    if attribute is None or len(attribute) != len(dataset):
        return None
    cached = getattr(dataset, "_sample_ids", None)
    if cached is None or cached[0] is not attribute:
        table = dataset_table(dataset)
        ids = torch.as_tensor(list(attribute), dtype=torch.long)
        cached = (attribute, ids.to(table.device) if table is not None else ids)
        dataset._sample_ids = cached
    return cached[1]


def _select(ids: torch.Tensor, indices) -> torch.Tensor:
    """``ids[indices]``; a contiguous run of indices (sequential loaders) is a slice, which
    needs no index copy to the device."""
    first = indices[0] if len(indices) else 0
    if list(indices) == list(range(first, first + len(indices))):
        return ids[first : first + len(indices)]
    return ids[torch.as_tensor(indices, dtype=torch.long).to(ids.device)]


class GatheredBatch(list):
    """A batch gathered at once: to any collate function a list of ``(x, y, t)`` samples (views
    of the batch tensors); forgetbench's collate passes the batch tensors through unchanged."""

    def __init__(self, batch):
        super().__init__(zip(*(part.unbind(0) for part in batch)))
        self.batch = list(batch)


def passthrough_collate(collate):
    @functools.wraps(collate)
    def collate_batch(batch):
        return batch.batch if isinstance(batch, GatheredBatch) else collate(batch)
    return collate_batch


def table_dataset_class(table: SampleTable) -> type:
    """An Avalanche ClassificationDataset subclass bound to ``table``.

    Its ``__getitems__`` (the batched-fetch protocol of torch's DataLoader) gathers a whole batch
    from the table, so even loaders Avalanche builds itself (the replay loader, EWC's importance
    pass) skip the per-sample path. Subsets and concatenations keep the class.
    """
    from avalanche.benchmarks.utils.classification_dataset import TaskAwareSupervisedClassificationDataset

    class TableDataset(TaskAwareSupervisedClassificationDataset):
        def __getitems__(self, indices):
            ids = sample_ids(self)
            in_items = [name for name, a in self._data_attributes.items() if a.use_in_getitem]
            if ids is None or in_items != ["targets_task_labels"]:  # e.g. a buffer's extra fields
                return [self[i] for i in indices]
            return GatheredBatch(self.table.gather(_select(ids, indices)))

        def _init_collate_fn(self, dataset, collate_fn):
            return passthrough_collate(super()._init_collate_fn(dataset, collate_fn))

    TableDataset.table = table
    return TableDataset


def _experience_labels(scenario: str, exp: int, local: torch.Tensor, global_: torch.Tensor):
    """(label, task label) of the samples of experience ``exp`` under ``scenario``."""
    if scenario not in SCENARIOS:
        raise ValueError(f"unknown scenario {scenario!r}; choose one of {list(SCENARIOS)}")
    label = global_ if scenario == "class" else local
    task = torch.full_like(local, exp if scenario == "task" else 0)
    return label, task


def _first(ids: torch.Tensor, limit: int | None) -> torch.Tensor:
    return ids if limit is None else ids[: int(limit)]


def _normalized(ds: Dataset, normalize: bool = True) -> tuple[torch.Tensor, float]:
    """Pixels in [0, 1], standardized by the dataset's mean/std unless ``normalize`` is false."""
    x = torch.cat([ds.train_x, ds.test_x]).float().div_(255)
    if not normalize:
        return x, 0.0
    mean = torch.tensor(ds.mean).view(1, -1, 1, 1)
    std = torch.tensor(ds.std).view(1, -1, 1, 1)
    x = x.sub_(mean).div_(std)
    return x, float(-ds.mean[0] / ds.std[0])


def split_stream(
    dataset: Dataset,
    n_experiences: int,
    scenario: str = "class",
    seed: int = 0,
    class_order: Sequence[int] | None = None,
    max_train_per_exp: int | None = None,
    max_test_per_exp: int | None = None,
    name: str | None = None,
    normalize: bool = True,
) -> Stream:
    """Split the classes of ``dataset`` into ``n_experiences`` disjoint groups of equal size.

    ``normalize=False`` keeps raw pixel intensities in [0, 1] (e.g. for spiking conversions)."""
    n_classes = dataset.num_classes
    if class_order is None:
        order = torch.randperm(n_classes, generator=torch.Generator().manual_seed(seed)).tolist()
    else:
        order = [int(c) for c in class_order]
        if sorted(order) != list(range(n_classes)):
            raise ValueError(f"class_order must be a permutation of 0..{n_classes - 1}, got {order}")
    if n_classes % n_experiences:
        raise ValueError(f"{n_classes} classes cannot be split into {n_experiences} equal experiences")
    per_exp = n_classes // n_experiences
    groups = [order[i * per_exp : (i + 1) * per_exp] for i in range(n_experiences)]
    local_of = torch.empty(n_classes, dtype=torch.long)
    for g in groups:
        local_of[torch.tensor(g)] = torch.arange(per_exp)

    images, background = _normalized(dataset, normalize)
    n_train = len(dataset.train_y)
    base_y = torch.cat([dataset.train_y, dataset.test_y])
    source, labels, tasks, train_ids, test_ids = [], [], [], [], []
    count = 0
    for exp, g in enumerate(groups):
        in_group = torch.isin(base_y, torch.tensor(g))
        for split_ids, limit, is_train in ((train_ids, max_train_per_exp, True), (test_ids, max_test_per_exp, False)):
            rows = torch.nonzero(in_group).flatten()
            rows = _first(rows[rows < n_train] if is_train else rows[rows >= n_train], limit)
            y, t = _experience_labels(scenario, exp, local_of[base_y[rows]], base_y[rows])
            source.append(rows), labels.append(y), tasks.append(t)
            split_ids.append(torch.arange(count, count + len(rows)))
            count += len(rows)
    table = SampleTable(
        images=images,
        source=torch.cat(source),
        view=torch.zeros(count, dtype=torch.long),
        y=torch.cat(labels),
        t=torch.cat(tasks),
        background=background,
    )
    return Stream(
        name=name or f"split_{dataset.name}",
        scenario=scenario,
        table=table,
        train_ids=train_ids,
        test_ids=test_ids,
        classes=groups,
        num_outputs=n_classes if scenario == "class" else per_exp,
        num_heads=n_experiences if scenario == "task" else 1,
        input_shape=dataset.input_shape,
        info={"class_order": order},
    )


def _transformed_stream(
    dataset: Dataset,
    n_experiences: int,
    scenario: str,
    max_train_per_exp: int | None,
    max_test_per_exp: int | None,
    name: str,
    normalize: bool = True,
    **views,
) -> Stream:
    """Every experience holds all classes, seen through its own input transform (view)."""
    n_classes = dataset.num_classes
    images, background = _normalized(dataset, normalize)
    n_train, n_test = len(dataset.train_y), len(dataset.test_y)
    base_y = torch.cat([dataset.train_y, dataset.test_y])
    train_rows = _first(torch.arange(n_train), max_train_per_exp)
    test_rows = _first(torch.arange(n_train, n_train + n_test), max_test_per_exp)
    source, view, labels, tasks, train_ids, test_ids = [], [], [], [], [], []
    count = 0
    for exp in range(n_experiences):
        for rows, split_ids in ((train_rows, train_ids), (test_rows, test_ids)):
            y, t = _experience_labels(scenario, exp, base_y[rows], base_y[rows] + exp * n_classes)
            source.append(rows), view.append(torch.full_like(rows, exp)), labels.append(y), tasks.append(t)
            split_ids.append(torch.arange(count, count + len(rows)))
            count += len(rows)
    table = SampleTable(
        images=images,
        source=torch.cat(source),
        view=torch.cat(view),
        y=torch.cat(labels),
        t=torch.cat(tasks),
        background=background,
        **views,
    )
    info = {k: v.tolist() for k, v in views.items() if k == "angles"}
    return Stream(
        name=name,
        scenario=scenario,
        table=table,
        train_ids=train_ids,
        test_ids=test_ids,
        classes=[list(range(n_classes))] * n_experiences,
        num_outputs=n_classes * n_experiences if scenario == "class" else n_classes,
        num_heads=n_experiences if scenario == "task" else 1,
        input_shape=dataset.input_shape,
        info=info,
    )


def permuted_stream(dataset: Dataset, n_experiences: int = 10, scenario: str = "domain", seed: int = 0,
                    max_train_per_exp=None, max_test_per_exp=None, name=None, normalize: bool = True) -> Stream:
    """Each experience applies its own fixed random pixel permutation (drawn from ``seed``).

    In class-IL each experience's digits are new classes (10 x T outputs), as in van de Ven et al.
    ``normalize=False`` keeps raw pixel intensities in [0, 1] (Mammoth's perm-mnist, DER's P-MNIST).
    """
    gen = torch.Generator().manual_seed(seed)
    size = math.prod(dataset.input_shape)
    perms = torch.stack([torch.randperm(size, generator=gen) for _ in range(n_experiences)])
    stream = _transformed_stream(dataset, n_experiences, scenario, max_train_per_exp, max_test_per_exp,
                                 name or f"permuted_{dataset.name}", normalize, permutations=perms)
    stream.info["permutation_seed"] = seed
    return stream


def rotated_stream(dataset: Dataset, n_experiences: int = 10, scenario: str = "domain", seed: int = 0,
                   angles: Sequence[float] | None = None, max_train_per_exp=None, max_test_per_exp=None,
                   name=None) -> Stream:
    """Each experience rotates every image by its own angle (uniform in [0, 180) from ``seed``)."""
    if angles is None:
        angles = torch.rand(n_experiences, generator=torch.Generator().manual_seed(seed)) * 180
    angles = torch.as_tensor(angles, dtype=torch.float32)
    if len(angles) != n_experiences:
        raise ValueError(f"got {len(angles)} angles for {n_experiences} experiences")
    return _transformed_stream(dataset, n_experiences, scenario, max_train_per_exp, max_test_per_exp,
                               name or f"rotated_{dataset.name}", angles=angles)


KINDS = {"split": split_stream, "permuted": permuted_stream, "rotated": rotated_stream}
# Training augmentations (``stream.augment``), applied per training batch by benchmarks.fastdata:
# crop_flip = RandomCrop(size, padding 4, black padding) + RandomHorizontalFlip(0.5), the CIFAR recipe.
AUGMENTATIONS = ("crop_flip",)


def build_stream(kind: str, dataset: str, root=None, download: bool = False, validation: float | None = None,
                 augment: str | None = None, **kwargs) -> Stream:
    """Entry point used by the ``stream`` config group (``_target_``). ``validation``: hold out that
    fraction of each experience's training data and evaluate on it (:func:`hold_out`). ``augment``:
    a training augmentation of :data:`AUGMENTATIONS` (None: none), see :func:`with_augmentation`."""
    if kind not in KINDS:
        raise ValueError(f"unknown stream kind {kind!r}; choose one of {sorted(KINDS)}")
    if validation:  # refuse a bad fraction before reading the data
        _check_fraction(validation)
    _check_augment(augment, kind)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        data = load_dataset(dataset, root, download)
    stream = KINDS[kind](data, **kwargs)
    stream = with_augmentation(stream, augment, data, normalized=kwargs.get("normalize", True))
    return hold_out(stream, validation, seed=kwargs.get("seed", 0))


def _check_augment(augment, kind: str) -> None:
    if augment is not None and augment not in AUGMENTATIONS:
        raise _config_error(f"stream.augment={augment}: must be one of {', '.join(AUGMENTATIONS)}, or null for none")
    if augment is not None and kind == "permuted":
        raise _config_error(f"stream.augment={augment}: not for a permuted stream (a crop or flip of permuted "
                            "pixels is no image transform); use stream.augment=null")


def with_augmentation(stream: Stream, augment: str | None, data: Dataset, normalized: bool = True) -> Stream:
    """``stream`` whose training batches get ``augment`` (recorded in ``stream.info``), padding with black
    (per channel: ``-mean / std`` when the pixels are normalized, else 0)."""
    if augment is None:
        return stream
    fill = (-torch.tensor(data.mean) / torch.tensor(data.std)) if normalized else torch.zeros(len(data.mean))
    stream.table = dataclasses.replace(stream.table, augment=augment,
                                       fill=fill.to(stream.table.images.dtype).to(stream.table.device))
    stream.info = {**stream.info, "augment": augment}
    return stream


VALIDATION_SEED_TAG = 0x7A11D  # keeps the split's random stream apart from the class order's and the permutations'


def _config_error(message: str) -> Exception:
    from forgetbench.benchmarks.experiment import ConfigError  # late: experiment imports this module

    return ConfigError(message)


def _check_fraction(fraction) -> float:
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0 <= fraction < 1:
        raise _config_error(f"stream.validation={fraction}: must be a number >= 0 and < 1 (the fraction of each "
                            "experience's training data held out for evaluation), or null / 0 for none")
    return float(fraction)


def validation_size(n: int, fraction: float) -> int:
    """How many of an experience's ``n`` training samples are held out: ``fraction x n``, rounded to nearest."""
    return int(math.floor(fraction * n + 0.5))


def _valid_range(n: int) -> str:
    """The fractions (4 decimals) that leave both parts of an ``n``-sample experience non-empty, in words."""
    low, high = math.ceil(0.5 / n * 1e4) / 1e4, math.floor((n - 0.5) / n * 1e4) / 1e4
    while validation_size(n, low) < 1:
        low = round(low + 1e-4, 4)
    while high > 0 and validation_size(n, high) >= n:
        high = round(high - 1e-4, 4)
    return f"from {low:g} to {high:g}" if low <= high else "null or 0: it has too few samples to split"


def _stratified_counts(labels: torch.Tensor, total: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(classes, how many of each to hold out) summing to ``total``, proportional to the class sizes
    (largest remainder; ties go to the smaller label)."""
    classes, counts = labels.unique(return_counts=True)
    quota = counts.double() * (total / len(labels))
    take = quota.floor().long()
    short = total - int(take.sum())
    if short > 0:
        order = sorted(range(len(classes)), key=lambda i: (-(float(quota[i]) - int(take[i])), int(classes[i])))
        take[torch.tensor(order[:short])] += 1
    return classes, torch.minimum(take, counts)


def hold_out(stream: Stream, fraction: float | None, seed: int = 0) -> Stream:
    """``stream`` with ``fraction`` of each experience's training samples held out as its validation
    part, which the benchmark then evaluates instead of the test split (``fraction`` 0 or None: the
    stream unchanged, evaluated on the test split).

    Per experience, ``round(fraction x n)`` of its ``n`` training samples are held out, stratified by
    class. Every base image gets one seeded random rank (``seed`` only) and each class holds out its
    lowest-ranked images. So the split depends only on the seed and the data (not the strategy), a
    class's held-out images don't depend on the class order, and permuted / rotated streams hold out
    the same images in every experience: no validation image is trained on in another view, as with
    the test set. A fraction leaving an experience's validation or training part empty is refused.
    """
    if not fraction:
        return stream
    fraction = _check_fraction(fraction)
    sizes = [len(ids) for ids in stream.train_ids]
    bad = [e for e, n in enumerate(sizes) if not 0 < validation_size(n, fraction) < n]
    if bad:
        n, e = min(sizes), bad[0]
        n_held = validation_size(sizes[e], fraction)
        raise _config_error(
            f"stream.validation={fraction:g}: holds out {n_held} of the {sizes[e]} training samples of experience {e}, "
            f"leaving {'no validation samples' if n_held == 0 else 'none to train on'}; with {n} training samples in the "
            f"smallest experience it must be {_valid_range(n)} (or null / 0 for none)"
            + ("" if n > 1 else "; raise stream.max_train_per_exp"))
    table = stream.table
    gen = torch.Generator().manual_seed(int(np.random.SeedSequence([int(seed), VALIDATION_SEED_TAG]).generate_state(1)[0]))
    rank = torch.empty(len(table.images), dtype=torch.long)
    rank[torch.randperm(len(table.images), generator=gen)] = torch.arange(len(table.images))
    rank = rank.to(table.device)
    train_ids, validation_ids = [], []
    for ids in stream.train_ids:
        ids = ids.to(table.device)
        labels, order = table.y[ids], rank[table.source[ids]]
        held = torch.zeros(len(ids), dtype=torch.bool, device=ids.device)
        classes, take = _stratified_counts(labels.cpu(), validation_size(len(ids), fraction))
        for c, k in zip(classes.tolist(), take.tolist()):
            members = torch.nonzero(labels == c).flatten()
            held[members[order[members].argsort()[:k]]] = True
        train_ids.append(ids[~held].to(stream.train_ids[0].device))
        validation_ids.append(ids[held].to(stream.train_ids[0].device))
    info = {**stream.info, "validation": fraction, "train_samples": [len(i) for i in train_ids],
            "validation_samples": [len(i) for i in validation_ids]}
    return dataclasses.replace(stream, train_ids=train_ids, validation_ids=validation_ids, info=info)
