"""Sleep strategies: exact checks of their pieces, and a tiny real run per supported scenario
(sleep_src: tests/test_sleep_src.py)."""

import pytest
import torch
from torch import nn

from forgetbench.strategies.sleep_cls import ReservoirBuffer, ema_update
from tests.conftest import check_tiny_run, tiny_run



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


@pytest.mark.parametrize("scenario", ["class", "task", "domain"])
def test_sleep_cls_tiny_run(tmp_path, scenario):
    check_tiny_run(tiny_run(tmp_path, "sleep_cls", scenario,
                            ["strategy.sleep_after_experience=true", "strategy.eval_network=working"]))


def test_sleep_cls_evaluates_the_stable_memory(tmp_path):
    """Nothing is consolidated before the first sleep: the stable memory is still the untrained net."""
    record = tiny_run(tmp_path, "sleep_cls", "class", ["strategy.sleep_every=null",
                                                       "strategy.sleep_after_experience=true",
                                                       "strategy.sleep_steps=1", "strategy.stable_update_prob=0"])
    acc = torch.tensor(record["accuracy_matrix"])
    assert torch.equal(acc[1:], acc[:1].expand(5, -1))  # every row = the untrained model's
