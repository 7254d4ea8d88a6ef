"""Sleep strategies: exact checks of their pieces, and a tiny real run per supported scenario
(sleep_src: tests/test_sleep_src.py)."""

import pytest
import torch
from torch import nn

from forgetbench.strategies.sleep_cls import ema_update
from tests.conftest import check_tiny_run, tiny_run



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
