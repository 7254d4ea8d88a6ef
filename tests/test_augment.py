"""Training augmentation (``stream.augment=crop_flip``): random crop (padding 4) + horizontal flip of every
training batch, on the device, vectorized, seeded by the run's seed; replayed samples too, evaluation never."""
from __future__ import annotations

import pytest
import torch

from forgetbench.benchmarks import experiment
from forgetbench.benchmarks.experiment import ConfigError, _build, run
from forgetbench.benchmarks.fastdata import FastDataMixin, augment_seed, crop_flip
from forgetbench.benchmarks.protocol import MatrixRecorder
from forgetbench.benchmarks.streams import dataset_table, sample_ids
from forgetbench.strategies.der import DarkReplayPlugin
from forgetbench.strategies.sleep_cls import CLSSleep

from tests.conftest import compose_cfg, make_tiny_cifar

CIFAR = ["stream=split_cifar10", "model=resnet18_reduced", "model.nf=4", "progress=false", "device=cpu",
         "threads=1", "batch_size=8", "stream.augment=crop_flip"]


def candidates(x: torch.Tensor, fill: torch.Tensor, padding: int = 4) -> torch.Tensor:
    """Every crop (offsets 0..2p per axis) and its mirror of one C x H x W image: (2 (2p+1)^2) x C x H x W."""
    c, h, w = x.shape
    padded = fill.view(c, 1, 1).expand(c, h + 2 * padding, w + 2 * padding).clone()
    padded[:, padding:padding + h, padding:padding + w] = x
    crops = padded.unfold(1, h, 1).unfold(2, w, 1)  # C x (2p+1) x (2p+1) x H x W
    crops = crops.permute(1, 2, 0, 3, 4).reshape(-1, c, h, w)
    return torch.cat([crops, crops.flip(-1)])


def crop_of(out: torch.Tensor, x: torch.Tensor, fill: torch.Tensor) -> int | None:
    """Index into :func:`candidates` of the crop/flip ``out`` is (the first), or None."""
    hits = (candidates(x, fill) == out).flatten(1).all(1).nonzero()
    return int(hits[0]) if len(hits) else None


@pytest.fixture(scope="module")
def cifar_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny_cifar")
    make_tiny_cifar(root, 10, per_batch=40, n_test=40)
    return root


def test_crop_flip_shape_values_and_every_offset():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(512, 3, 8, 8)
    fill = torch.tensor([-1.5, -2.0, -2.5])
    out = crop_flip(x, fill, gen)
    assert out.shape == x.shape and out.dtype == x.dtype and out.is_contiguous()
    found = [crop_of(o, xi, fill) for o, xi in zip(out[:200], x[:200])]
    assert None not in found  # each output is one crop of its own image, maybe mirrored
    flipped = sum(i >= 81 for i in found)  # candidates 81..161 are the mirrored crops
    assert 60 < flipped < 140  # about half mirrored
    assert len({i % 81 for i in found}) > 60  # the 9 x 9 offsets are all drawn (200 draws)
    assert not torch.equal(out, x)
    # the padding is black per channel: a fully shifted crop shows fill values on its border
    shifted = out[(out[:, 0, 0, :] == fill[0]).all(1)]
    assert len(shifted) and (shifted[:, 1, 0, :] == fill[1]).all() and (shifted[:, 2, 0, :] == fill[2]).all()


def test_crop_flip_is_deterministic_per_seed():
    x = torch.randn(64, 3, 32, 32)
    a, b, c = (crop_flip(x, None, torch.Generator().manual_seed(s)) for s in (1, 1, 2))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert augment_seed(0) != augment_seed(1) and augment_seed(3) == augment_seed(3)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_crop_flip_on_the_gpu():
    x = torch.randn(64, 3, 32, 32, device="cuda")
    gen = torch.Generator(device="cuda").manual_seed(0)
    out = crop_flip(x, torch.zeros(3, device="cuda"), gen)
    assert out.device == x.device
    assert all(crop_of(o.cpu(), xi.cpu(), torch.zeros(3)) is not None for o, xi in zip(out, x))


def test_bad_values_are_refused(cifar_root):
    from forgetbench.benchmarks.experiment import validate

    with pytest.raises(ConfigError, match="stream.augment=flip: must be"):
        validate(compose_cfg([*CIFAR, "stream.augment=flip"], cifar_root))
    with pytest.raises(ConfigError, match="not for a permuted stream"):
        _build(compose_cfg(["stream=permuted_mnist", "+stream.augment=crop_flip"], cifar_root).stream)


def capture(monkeypatch):
    """Record every training batch before and after the augmentation, and every evaluated batch."""
    seen = {"train": [], "eval": [], "labels": []}
    augment = FastDataMixin._augment

    def recording(self):
        before = self.mbatch[0].clone()
        augment(self)
        seen["train"].append((before, self.mbatch[0].clone(), dataset_table(self.adapted_dataset)))
        seen["labels"].append((self.mbatch[1].tolist(), set(self.experience.classes_in_this_experience)))

    def after_eval_iteration(self, strategy, **kwargs):
        seen["eval"].append((strategy.mb_x.clone(), strategy.adapted_dataset))
        return eval_iteration(self, strategy, **kwargs)

    eval_iteration = MatrixRecorder.after_eval_iteration
    monkeypatch.setattr(FastDataMixin, "_augment", recording)
    monkeypatch.setattr(MatrixRecorder, "after_eval_iteration", after_eval_iteration)
    return seen


def test_training_batches_are_augmented_and_evaluation_never(cifar_root, tmp_path, monkeypatch):
    seen = capture(monkeypatch)
    record = run(compose_cfg([*CIFAR, "strategy=naive", f"results_dir={tmp_path}"], cifar_root), tmp_path / "r")
    assert record["stream_info"]["augment"] == "crop_flip" and record["status"] == "ok"
    assert seen["train"] and seen["eval"]
    changed = 0
    for before, after, table in seen["train"]:
        assert after.shape == before.shape
        changed += int((after != before).flatten(1).any(1).sum())
        assert all(crop_of(a, b, table.fill) is not None for a, b in zip(after, before))
    assert changed > len(seen["train"])  # most samples move
    # evaluation: exactly the stored images, in order
    for x, dataset in seen["eval"]:
        ids = sample_ids(dataset)
        table = dataset_table(dataset)
        stored = table.gather(ids)[0]
        assert any(torch.equal(x, stored[i:i + len(x)]) for i in range(0, len(stored), len(x)))


def test_the_batch_order_is_the_same_with_and_without_augmentation(cifar_root, tmp_path, monkeypatch):
    """The augmentation draws from its own generator: the same samples come in the same order, with or without it."""
    seen = capture(monkeypatch)
    run(compose_cfg([*CIFAR, "strategy=naive", f"results_dir={tmp_path}"], cifar_root), tmp_path / "a")
    augmented = list(seen["train"])
    seen["train"].clear()
    run(compose_cfg([*CIFAR, "strategy=naive", "stream.augment=null", f"results_dir={tmp_path}"], cifar_root),
        tmp_path / "b")
    plain = list(seen["train"])
    assert len(plain) == len(augmented) > 0
    assert all(torch.equal(before, after) for before, after, _ in plain)  # stream.augment=null: untouched
    assert all(torch.equal(p, a) for (p, _, _), (a, _, _) in zip(plain, augmented))


def test_augmentation_is_deterministic_per_seed(cifar_root, tmp_path, monkeypatch):
    seen = capture(monkeypatch)
    outputs = []
    for seed, name in ((0, "a"), (0, "b"), (1, "c")):
        seen["train"].clear()
        record = run(compose_cfg([*CIFAR, "strategy=naive", f"seed={seed}", f"results_dir={tmp_path}"], cifar_root),
                     tmp_path / name)
        outputs.append(([a for _, a, _ in seen["train"]], record["accuracy_matrix"]))
    (a, acc_a), (b, acc_b), (c, _) = outputs
    assert all(torch.equal(x, y) for x, y in zip(a, b)) and len(a) == len(b)
    assert acc_a.tolist() == acc_b.tolist()
    assert not all(torch.equal(x, y) for x, y in zip(a, c))


def test_replayed_samples_are_augmented_too(cifar_root, tmp_path, monkeypatch):
    """As Mammoth (utils/buffer.py get_data(transform=...)): the buffer keeps the stored images and every
    replayed batch gets a fresh crop and flip, like the current batch (ER: joined to it by the loader)."""
    seen = capture(monkeypatch)
    run(compose_cfg([*CIFAR, "strategy=replay", "strategy.mem_size=30", "strategy.batch_size_mem=6",
                     f"results_dir={tmp_path}"], cifar_root), tmp_path / "r")
    replayed = slice(8, 14)  # the replay loader puts them last
    joined = [(b, a, t) for (b, a, t), (labels, current) in zip(seen["train"], seen["labels"])
              if len(b) == 14  # current batch (8) + replayed (6) ...
              and not set(labels[replayed]) & current]  # ... whose replayed part holds past classes only
    assert len(joined) == sum(len(b) == 14 for b, _, _ in seen["train"]) > 0
    assert_cropped([(before[replayed], after[replayed], table) for before, after, table in joined])


REPLAYING = {"der": (DarkReplayPlugin, "before_backward"), "derpp": (DarkReplayPlugin, "before_backward"),
             "sleep_cls": (CLSSleep, "sleep")}  # where each strategy forwards its replayed batches


@pytest.mark.parametrize("strategy,batches_per_step", [("der", 1), ("derpp", 2), ("sleep_cls", 1)])
def test_replayed_batches_forwarded_on_their_own_are_augmented(cifar_root, tmp_path, monkeypatch, strategy,
                                                               batches_per_step):
    """DER and sleep_cls forward their replayed batches on their own (as Mammoth and CLS-ER) and augment
    each through the strategy's ``augment``; their buffers keep the images before augmentation (what
    came in, not the crop the step trained on); the current batch is augmented as always."""
    calls, replaying = [], [False]
    augment = FastDataMixin.augment
    plugin_cls, method = REPLAYING[strategy]
    replay = getattr(plugin_cls, method)

    def recording(self, x):
        out = augment(self, x)
        calls.append((replaying[0], x.clone(), out.clone(), dataset_table(self.adapted_dataset)))
        return out

    def flagged(self, strategy, **kwargs):
        replaying[0] = True
        try:
            replay(self, strategy, **kwargs)
        finally:
            replaying[0] = False

    monkeypatch.setattr(FastDataMixin, "augment", recording)
    monkeypatch.setattr(plugin_cls, method, flagged)
    cfg = compose_cfg([*CIFAR, f"strategy={strategy}", "strategy.mem_size=30", f"results_dir={tmp_path}",
                       *(["strategy.batch_size_mem=6"] if strategy != "sleep_cls" else
                         ["strategy.sleep_batch_size=6"])], cifar_root)
    strategy_obj = {}
    build = experiment.build_strategy

    def keep(*args, **kwargs):
        strategy_obj["s"] = build(*args, **kwargs)
        return strategy_obj["s"]

    monkeypatch.setattr(experiment, "build_strategy", keep)
    run(cfg, tmp_path / "r")
    replayed = [(before, after, table) for flag, before, after, table in calls if flag]
    current = [c for c in calls if not c[0]]
    # DER replays before its step's batch is stored (none at the first step), sleep_cls sleeps after it
    assert len(replayed) == batches_per_step * (len(current) - (strategy != "sleep_cls"))
    assert all(len(before) == 6 for before, _, _ in replayed)
    assert_cropped(replayed)
    buffer = (strategy_obj["s"].dark_replay if strategy != "sleep_cls" else strategy_obj["s"].cls_sleep).buffer
    unaugmented = torch.cat([before for _, before, _, _ in current]).flatten(1)
    stored = buffer.stored()[0].flatten(1)
    assert all((unaugmented == row).all(1).any() for row in stored)  # each stored image came in as it is


def assert_cropped(batches) -> None:
    """Every image after is a crop/flip of the image before, and more than one per batch moved on average."""
    moved = 0
    for before, after, table in batches:
        for a, b in zip(after, before):
            assert crop_of(a, b, table.fill) is not None
            moved += int(not torch.equal(a, b))
    assert moved > len(batches)
