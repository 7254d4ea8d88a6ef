"""Sleep strategies: exact checks of their pieces, and a tiny real run per supported scenario."""

import pytest
import torch
from torch import nn

from forgetbench.strategies.models import mlp
from forgetbench.strategies.sleep_cls import ReservoirBuffer, ema_update
from forgetbench.strategies.sleep_src import layer_scales, linear_layers, stdp
from tests.conftest import TINY, compose_cfg



def test_reservoir_keeps_a_uniform_sample():
    n, capacity, trials = 50, 10, 2000
    counts = torch.zeros(n)
    for trial in range(trials):
        buffer = ReservoirBuffer(capacity, seed=trial)
        for start in range(0, n, 7):  # batches of 7, the last one shorter
            ids = torch.arange(start, min(start + 7, n))
            buffer.add(ids.float()[:, None], ids, torch.zeros_like(ids))
        assert len(buffer) == capacity and buffer.seen == n
        assert len(set(buffer.y.tolist())) == capacity  # no sample stored twice
        counts[buffer.y] += 1
    freq = counts / trials  # each sample is kept with probability capacity / n = 0.2
    assert (freq - capacity / n).abs().max() < 0.04  # ~4.5 standard deviations
    chi2 = ((counts - trials * capacity / n) ** 2 / (trials * capacity / n)).sum()
    assert chi2 < 90  # chi-square, 49 degrees of freedom: p < 0.001 above 86


def test_reservoir_fills_before_replacing_and_samples_distinct():
    buffer = ReservoirBuffer(5, seed=0)
    buffer.add(torch.arange(3.0)[:, None], torch.arange(3), torch.zeros(3, dtype=torch.long))
    assert len(buffer) == 3 and buffer.y[:3].tolist() == [0, 1, 2]
    x, y, t = buffer.sample(10)
    assert sorted(y.tolist()) == [0, 1, 2] and torch.equal(x[:, 0].long(), y)


def test_ema_update_formula():
    torch.manual_seed(0)
    model, memory = nn.Linear(3, 2), nn.Linear(3, 2)
    expected = [0.9 * m.detach() + 0.1 * p.detach() for m, p in zip(memory.parameters(), model.parameters())]
    ema_update(memory, model, decay=0.9)
    for got, want in zip(memory.parameters(), expected):
        assert torch.allclose(got, want)


def test_ema_update_copies_batchnorm_statistics():
    model, memory = nn.BatchNorm1d(3), nn.BatchNorm1d(3)
    model(torch.randn(8, 3) + 5)  # training-mode pass: running stats move
    ema_update(memory, model, decay=0.9)
    assert torch.equal(memory.running_mean, model.running_mean)
    assert torch.equal(memory.running_var, model.running_var)


def test_layer_scales_follow_the_authors_normalization_and_keep_the_argmax():
    torch.manual_seed(0)
    net = mlp((1, 4, 4), num_outputs=5, hidden_sizes=[8, 6], bias=False)
    x = torch.rand(64, 1, 4, 4)
    weights = [layer.weight.detach() for layer in linear_layers(net)]
    acts, h = [], x.flatten(1)
    for w in weights:
        h = torch.relu(h @ w.T)
        acts.append(float(h.max()))
    s = [max(float(w.max()), a) for w, a in zip(weights, acts)]
    expected = [1 / s[0], s[0] / s[1], (s[1] / s[0]) / s[2]]  # normalize_nn_data.m, layer by layer
    scales = layer_scales(weights, acts)
    assert scales == pytest.approx(expected)
    with torch.no_grad():
        reference = net(x).argmax(1)
        for layer, scale in zip(linear_layers(net), scales):
            layer.weight.mul_(scale)
        assert torch.equal(net(x).argmax(1), reference)


def test_sleep_src_warns_about_biases(tmp_path):
    with pytest.warns(UserWarning, match="no biases"):
        record = _tiny_run(tmp_path, "sleep_src", "class", ["strategy.iterations=50", "strategy.increment=0"])
    assert record["status"] == "ok"


@pytest.mark.parametrize("weight_dependent", [False, True])
def test_stdp_changes_exactly_the_rows_of_firing_neurons(weight_dependent):
    w = torch.tensor([[0.5, -0.5, 0.5], [-1.0, 1.0, 0.0], [0.0, 0.0, 0.0]])
    pre = torch.tensor([True, False, True])
    post = torch.tensor([False, True, True])
    inc, dec = 0.1, 0.01
    before = w.clone()
    stdp(w, pre, post, inc, dec, weight_dependent)
    if weight_dependent:  # factor 2 sigmoid(-W / 0.001): ~2 for W << 0, 1 at W = 0, ~0 for W >> 0
        row1 = [-1.0 + 2 * inc, 1.0, inc]
        row2 = [inc, -dec, inc]
    else:
        row1 = [-1.0 + inc, 1.0 - dec, 0.0 + inc]
        row2 = [inc, -dec, inc]
    assert torch.equal(w[0], before[0])  # neuron 0 did not fire
    assert torch.allclose(w[1], torch.tensor(row1), atol=1e-6)
    assert torch.allclose(w[2], torch.tensor(row2), atol=1e-6)


def _tiny_run(tmp_path, strategy, scenario, extra=()):
    from forgetbench.benchmarks.experiment import run

    overrides = [f"strategy={strategy}", f"scenario={scenario}", "stream.max_train_per_exp=64",
                 "stream.max_test_per_exp=32", "epochs=2", *extra]
    return run(compose_cfg([*TINY, *overrides]), tmp_path / "run")


def _check(record):
    acc = torch.tensor(record["accuracy_matrix"])
    assert record["status"] == "ok" and acc.shape == (6, 5)
    assert not acc[1:].isnan().any() and 0 <= record["metrics"]["acc"] <= 1
    assert acc[1, 0] > 0.5  # learned the first experience


@pytest.mark.parametrize("scenario", ["class", "task", "domain"])
def test_sleep_cls_tiny_run(tmp_path, scenario):
    _check(_tiny_run(tmp_path, "sleep_cls", scenario, ["strategy.sleep_after_experience=true",
                                                       "strategy.eval_network=working"]))


def test_sleep_cls_evaluates_the_stable_memory(tmp_path):
    """Nothing is consolidated before the first sleep: the stable memory is still the untrained net."""
    record = _tiny_run(tmp_path, "sleep_cls", "class", ["strategy.sleep_every=null",
                                                        "strategy.sleep_after_experience=true",
                                                        "strategy.sleep_steps=1", "strategy.stable_update_prob=0"])
    acc = torch.tensor(record["accuracy_matrix"])
    assert torch.equal(acc[1:], acc[:1].expand(5, -1))  # every row = the untrained model's


@pytest.mark.parametrize("scenario", ["class", "domain"])
def test_sleep_src_tiny_run(tmp_path, scenario):
    _check(_tiny_run(tmp_path, "sleep_src", scenario, ["model.bias=false", "stream.normalize=false",
                                                       "strategy.iterations=200", "strategy.increment=50"]))


def test_sleep_src_refuses_task_il(tmp_path):
    from forgetbench.benchmarks.experiment import ConfigError

    with pytest.raises(ConfigError, match="does not support the 'task' scenario"):
        _tiny_run(tmp_path, "sleep_src", "task", ["model.bias=false"])


def test_sleep_src_needs_one_threshold_per_layer(tmp_path):
    with pytest.raises(ValueError, match="3 thresholds for 2 Linear layers"):
        _tiny_run(tmp_path, "sleep_src", "class", ["model.bias=false", "model.hidden_sizes=[8]"])
