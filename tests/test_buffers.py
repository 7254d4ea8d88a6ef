"""The reservoir buffer that ER, DER, DER++ and sleep_cls fill during training (strategies/buffers.py)."""
import pytest
import torch

from forgetbench.strategies.buffers import ReservoirBuffer


def test_reservoir_keeps_a_uniform_sample():
    n, capacity, trials = 50, 10, 2000
    counts = torch.zeros(n)
    for trial in range(trials):
        buffer = ReservoirBuffer(capacity, seed=trial)
        for start in range(0, n, 7):  # batches of 7, the last one shorter
            ids = torch.arange(start, min(start + 7, n))
            buffer.add(ids.float()[:, None], ids, torch.zeros_like(ids))
        assert len(buffer) == capacity and buffer.seen == n
        assert len(set(buffer.stored()[1].tolist())) == capacity  # no sample stored twice
        counts[buffer.stored()[1]] += 1
    freq = counts / trials  # each sample is kept with probability capacity / n = 0.2
    assert (freq - capacity / n).abs().max() < 0.04  # ~4.5 standard deviations
    chi2 = ((counts - trials * capacity / n) ** 2 / (trials * capacity / n)).sum()
    assert chi2 < 90  # chi-square, 49 degrees of freedom: p < 0.001 above 86


def test_reservoir_fills_before_replacing_and_samples_distinct():
    buffer = ReservoirBuffer(5, seed=0)
    buffer.add(torch.arange(3.0)[:, None], torch.arange(3), torch.zeros(3, dtype=torch.long))
    assert len(buffer) == 3 and buffer.stored()[1].tolist() == [0, 1, 2]
    x, y, t = buffer.sample(10)
    assert sorted(y.tolist()) == [0, 1, 2] and torch.equal(x[:, 0].long(), y)


def test_reservoir_stores_any_fields_and_rejects_an_empty_capacity():
    buffer = ReservoirBuffer(4, seed=0)
    logits = torch.randn(3, 10)
    buffer.add(torch.zeros(3, 1, 28, 28), torch.arange(3), torch.zeros(3, dtype=torch.long), logits)
    x, y, t, stored_logits = buffer.stored()
    assert x.shape == (3, 1, 28, 28) and torch.equal(stored_logits, logits) and not stored_logits.requires_grad
    with pytest.raises(ValueError, match="capacity must be positive"):
        ReservoirBuffer(0)
