"""sleep_dream (hippocampal generative replay, DGR+distill): exact checks of its pieces on hand-made
cases, the state it keeps after one tiny experience, and tiny real runs in every scenario."""
import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F

from forgetbench.benchmarks.experiment import run
from forgetbench.benchmarks.streams import dataset_table, sample_ids
from forgetbench.benchmarks.training import SeenClassesLoss
from forgetbench.strategies import distillation
from forgetbench.strategies.distillation import distillation_loss, soft_targets
from forgetbench.strategies.models import mlp
from forgetbench.strategies.sleep_dream import VAE, DreamSleep, memory_parameters, vae_parameters
from tests.conftest import train_first_experience

MNIST_MEAN, MNIST_STD = 0.1307, 0.3081


def _plugin(**overrides) -> DreamSleep:
    args = dict(replay_targets="soft", temperature=2.0, dream_batch_size=None, latent_size=3,
                generator_hidden_sizes=[5], generator_lr=1e-3, sleep_steps=0, seed=0)
    return DreamSleep(**{**args, **overrides})


def _trained_with_images(tiny_cfg, *overrides):
    """As conftest's ``trained`` (the harness's strategy after the tiny stream's first experience), and that
    experience's training inputs, flattened: what the strategy must not keep."""
    strategy, _, experience = train_first_experience(tiny_cfg(*overrides))
    dataset = experience.dataset
    return strategy, dataset_table(dataset).gather(sample_ids(dataset))[0].flatten(1)


# (a) the pieces, by hand

def test_soft_targets_are_the_tempered_softmax_over_the_previous_classes_padded_with_zeros():
    logits = torch.tensor([[2.0, 0.0, -2.0, 5.0]])
    targets = soft_targets(logits, torch.tensor([True, True, True, False]), temperature=2.0)
    e = math.e
    expected = torch.tensor([[e, 1.0, 1 / e, 0.0]]) / (e + 1 + 1 / e)  # softmax([1, 0, -1]), class 3 not seen before
    assert torch.allclose(targets, expected)


def _their_loss_fn_kd(scores, target_scores, T=2.0):
    """van de Ven's utils.loss_fn_kd (preprints branch), verbatim but for the device handling."""
    log_scores_norm = F.log_softmax(scores / T, dim=1)
    targets_norm = F.softmax(target_scores / T, dim=1)
    n = scores.size(1)
    if n > target_scores.size(1):
        zeros_to_add = torch.zeros(scores.size(0), n - target_scores.size(1))
        targets_norm = torch.cat([targets_norm.detach(), zeros_to_add], dim=1)
    return -(targets_norm * log_scores_norm).sum(dim=1).mean() * T ** 2


def test_distillation_loss_is_van_de_vens_loss_fn_kd():
    torch.manual_seed(0)
    student, teacher = torch.randn(7, 4), torch.randn(7, 2)  # 2 classes seen before, 4 active now
    previous = torch.tensor([True, True, False, False])
    targets = soft_targets(torch.cat([teacher, torch.randn(7, 2)], 1), previous, 2.0)  # 2 unseen outputs
    ours = float(distillation_loss(student, targets, 2.0))
    assert ours == pytest.approx(float(_their_loss_fn_kd(student, teacher, 2.0)), rel=1e-6)
    # their y_hat[:, active_classes]: the student's softmax over its active outputs only (here 4 of 6)
    wide, active = torch.cat([student, torch.randn(7, 2)], 1), torch.tensor([True] * 4 + [False] * 2)
    padded = torch.cat([previous, torch.tensor([False, False])])
    targets = soft_targets(torch.cat([teacher, torch.randn(7, 4)], 1), padded, 2.0)
    assert float(distillation_loss(wide, targets, 2.0, active)) == pytest.approx(ours, rel=1e-6)


def _hand_case(replay_targets: str, seen):
    """Teacher logits [2, 0, 2, 0] on the dream [2, 0]; classes {0, 1} seen before; a zero student."""
    plugin = _plugin(replay_targets=replay_targets)
    teacher = nn.Linear(2, 4, bias=False)
    student = nn.Linear(2, 4, bias=False)
    with torch.no_grad():
        teacher.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [0.0, 0.0]]))
        student.weight.zero_()
    plugin.teacher.previous_model = teacher
    plugin.teacher.previous_classes = {0: torch.tensor([True, True, False, False])}
    criterion = nn.CrossEntropyLoss()
    if seen is not None:
        criterion = SeenClassesLoss(4)
        criterion.seen[seen] = True
    strategy = SimpleNamespace(model=student, _criterion=criterion)
    return plugin.replay_loss(strategy, torch.tensor([[2.0, 0.0]])).detach()


def test_replay_loss_by_hand():
    # soft: targets softmax([2, 0] / 2) = [e, 1] / (e + 1) on classes 0, 1; the zero student's log-probability is
    # -log(active outputs) everywhere; the targets sum to 1, so the loss is T^2 log(active outputs)
    assert float(_hand_case("soft", [0, 1, 2])) == pytest.approx(4 * math.log(3))  # active_classes=seen, class 2 new
    assert float(_hand_case("soft", None)) == pytest.approx(4 * math.log(4))  # active_classes=all
    # hard: the previous model's label is argmax over classes 0, 1 of [2, 0] = 0; cross-entropy over the active outputs
    assert float(_hand_case("hard", [0, 1, 2])) == pytest.approx(math.log(3))
    assert float(_hand_case("hard", None)) == pytest.approx(math.log(4))


def test_the_step_weighs_current_and_replay_as_one_over_t():
    plugin = _plugin()
    plugin.previous_generator = VAE((2,), [3], 2)
    plugin.lo, plugin.hi = torch.zeros(1, 1), torch.ones(1, 1)
    plugin.replay_loss = lambda strategy, x: torch.tensor(10.0)
    for t, expected in [(2, 0.5 * 4 + 0.5 * 10), (4, 0.25 * 4 + 0.75 * 10)]:
        plugin.experiences = t
        strategy = SimpleNamespace(loss=torch.tensor(4.0), train_mb_size=6)
        plugin.before_backward(strategy)
        assert float(strategy.loss) == pytest.approx(expected)
        assert plugin.dreams.shape == (6, 2)  # dream batch = the training batch by default


def test_vae_parameter_count_and_the_declared_memory():
    assert vae_parameters(784) == sum(p.numel() for p in VAE((1, 28, 28)).parameters()) == 1_069_684
    assert vae_parameters(5, [7, 3], 2) == sum(p.numel() for p in VAE((5,), [7, 3], 2).parameters())
    assert memory_parameters({"generator_hidden_sizes": [400, 400], "latent_size": 100}, 784) == 2 * 1_069_684


def test_normalized_inputs_map_to_unit_range_and_back():
    plugin = _plugin()
    raw = torch.rand(16, 1, 4, 4)
    raw[0, 0, 0, 0], raw[0, 0, 0, 1] = 0.0, 1.0
    plugin._observe(raw)
    assert torch.equal(plugin.to_unit(raw), raw)  # raw pixels: the identity
    normalized = (raw - MNIST_MEAN) / MNIST_STD
    other = _plugin()
    other._observe(normalized)
    assert torch.allclose(other.to_unit(normalized), raw, atol=1e-6)
    assert torch.allclose(other.from_unit(raw), normalized, atol=1e-6)


# (b) after one tiny experience

@pytest.mark.parametrize("normalize", [False, True])
def test_dreams_have_the_inputs_shape_and_range(normalize, trained):
    strategy, _ = trained("strategy=sleep_dream", f"stream.normalize={str(normalize).lower()}")
    plugin = strategy.dream
    dreams = plugin.sample(64)
    assert dreams.shape == (64, 1, 28, 28) and dreams.dtype == torch.float32
    lo, hi = (0.0, 1.0) if not normalize else (-MNIST_MEAN / MNIST_STD, (1 - MNIST_MEAN) / MNIST_STD)
    assert float(plugin.lo) == pytest.approx(lo, abs=1e-5) and float(plugin.hi) == pytest.approx(hi, abs=1e-5)
    assert dreams.min() >= lo - 1e-5 and dreams.max() <= hi + 1e-5
    assert dreams.std() > 0  # not a constant image


def test_the_generator_learns_experience_0_step_by_step(trained):
    strategy, _ = trained("strategy=sleep_dream", "epochs=null", "iterations=12")
    plugin = strategy.dream
    losses = plugin.generator_losses[0]
    assert len(losses) == 12  # one generator step per classifier step
    assert np.mean(losses[-3:]) < np.mean(losses[:3]) - 0.05  # per-pixel BCE + KL starts near log 2 ~ 0.69
    # the hand-over: frozen copies of the generator and the classifier, the classes seen so far
    for copy_, live in ((plugin.previous_generator, plugin.generator),
                        (plugin.teacher.previous_model, strategy.model)):
        assert copy_ is not live and not copy_.training
        for a, b in zip(copy_.parameters(), live.parameters()):
            assert torch.equal(a, b) and a.data_ptr() != b.data_ptr() and not a.requires_grad


def test_dreams_are_labelled_by_the_previous_model(trained, monkeypatch):
    strategy, classes = trained("strategy=sleep_dream")
    plugin = strategy.dream
    assert list(plugin.teacher.previous_classes) == [0]
    assert plugin.teacher.previous_classes[0].nonzero().flatten().tolist() == sorted(classes)
    with torch.no_grad():  # the learner moves on: the teacher must not
        for p in strategy.model.parameters():
            p.add_(0.5)
    seen = {}

    def spy(student, targets, temperature, columns):
        seen["targets"], seen["temperature"], seen["columns"] = targets, temperature, columns
        return distillation_loss(student, targets, temperature, columns)

    monkeypatch.setattr(distillation, "distillation_loss", spy)
    dreams = plugin.sample(32)
    plugin.replay_loss(strategy, dreams)
    with torch.no_grad():
        teacher = plugin.teacher.previous_model(dreams)
    previous = sorted(classes)
    expected = torch.zeros(32, 10)
    expected[:, previous] = F.softmax(teacher[:, previous] / 2.0, dim=1)
    assert seen["temperature"] == 2.0 and bool(seen["columns"].all())  # active_classes=all: every output
    assert torch.allclose(seen["targets"], expected)
    assert not torch.allclose(teacher, strategy.model(dreams))  # so these are not the learner's own outputs


def _tensors(obj, found, visited):
    if id(obj) in visited:
        return
    visited.add(id(obj))
    if isinstance(obj, torch.Tensor):
        found.append(obj)
    elif isinstance(obj, nn.Module):
        found.extend(obj.state_dict().values())
    elif isinstance(obj, torch.optim.Optimizer):
        _tensors(obj.state_dict(), found, visited)
    elif isinstance(obj, dict):
        for value in obj.values():
            _tensors(value, found, visited)
    elif isinstance(obj, (list, tuple, set)):
        for value in obj:
            _tensors(value, found, visited)
    elif hasattr(obj, "__dict__") and not isinstance(obj, type):
        _tensors(vars(obj), found, visited)


def _holds_a_sample(tensors, images) -> bool:
    for tensor in tensors:
        if tensor.is_floating_point() and tensor.numel() % images.shape[1] == 0 and tensor.numel():
            rows = tensor.detach().reshape(-1, images.shape[1])
            if (rows[:, None, :] == images[None, :, :]).all(-1).any():
                return True
    return False


def test_no_input_data_is_kept(mnist_root, tiny_cfg):
    strategy, images = _trained_with_images(tiny_cfg, "strategy=sleep_dream")
    assert images.shape == (48, 784)
    assert _holds_a_sample([images[5:7].view(2, 1, 28, 28).clone()], images)  # the check finds a kept sample ...
    found = []
    _tensors(strategy.dream, found, set())
    assert len(found) > 20  # the generators, the teacher, Adam's moments, the class masks, the input range
    assert not _holds_a_sample(found, images)  # ... and the strategy's state holds none
    assert strategy.dream.dreams is None


# (c) tiny runs

def _matrix(tiny_cfg, out, *overrides) -> tuple[np.ndarray, dict]:
    record = run(tiny_cfg(*overrides), out)
    assert record["status"] == "ok"
    return np.array(record["accuracy_matrix"], dtype=float), record


def test_the_dreams_change_the_accuracy_matrix(mnist_root, tiny_cfg, tmp_path):
    naive, naive_record = _matrix(tiny_cfg, tmp_path / "naive", "strategy=naive", "active_classes=seen")
    ours, record = _matrix(tiny_cfg, tmp_path / "dream", "strategy=sleep_dream", "active_classes=seen")
    np.testing.assert_array_equal(ours[0], naive[0])  # same seed: the same untrained model ...
    np.testing.assert_array_equal(ours[1], naive[1])  # ... and experience 0 learned alike (no dreams yet) ...
    assert not np.array_equal(ours[2:], naive[2:])  # ... then the dreams act
    classifier = sum(p.numel() for p in mlp((1, 28, 28), 10).parameters())  # 784-400-400-10
    assert record["memory"]["samples"] == 0  # the generator and its copy + the classifier's copy, float32:
    assert record["memory"]["bytes"] == 4 * (2 * vae_parameters(784) + classifier)
    timings = record["timings"]  # the sleep after each experience is timed, part of the training time
    assert len(timings["sleep_seconds_per_experience"]) == len(ours) - 1
    assert 0 < timings["sleep_seconds"] == sum(timings["sleep_seconds_per_experience"]) < timings["train_seconds"]
    assert "sleep_seconds" not in naive_record["timings"]  # no sleep phases: no sleep time


@pytest.mark.parametrize("scenario,extra", [
    ("class", []),  # active_classes=all
    ("class", ["strategy.replay_targets=hard", "strategy.sleep_steps=2", "strategy.dream_batch_size=8"]),
    ("task", []),
    ("domain", []),
    ("domain", ["stream=permuted_mnist", "stream.n_experiences=3", "epochs=4"]),  # always normalized inputs
], ids=["class_all", "class_hard_sleep", "task", "domain", "domain_permuted"])
def test_tiny_runs_complete(scenario, extra, mnist_root, tiny_cfg, tmp_path):
    acc, record = _matrix(tiny_cfg, tmp_path / "run", "strategy=sleep_dream", f"scenario={scenario}", *extra)
    assert not np.isnan(acc[1:]).any() and ((acc >= 0) & (acc <= 1)).all()
    assert acc[1, 0] > 0.5  # learned the first experience
    assert record["memory"]["samples"] == 0
