"""sleep_cls: the memories' horizons follow the experience length (``horizons_per_experience``)."""

import pytest
from torch import nn

from forgetbench.strategies.sleep_cls import CLSSleep


def _plugin(plastic=(0.99, 1.0), stable=(0.99, 0.9), horizons=3.0):
    return CLSSleep(nn.Linear(2, 2), mem_size=10, sleep_steps=1, sleep_batch_size=None, consistency_weight=2.0,
                    plastic_rate=plastic[0], plastic_update_prob=plastic[1], stable_rate=stable[0],
                    stable_update_prob=stable[1], sleep_lr=None, every=1, after_experience=False, seed=0,
                    horizons_per_experience=horizons)


def test_rates_are_scaled_so_the_slower_horizon_fits_the_experience():
    plugin = _plugin(plastic=(0.98, 1.0), stable=(0.99, 0.9), horizons=3.0)
    # stable horizon 1 / (0.01 * 0.9) = 111.1 sleep steps; 94 steps / 3 = 31.33: 1 - decay x 111.1 / 31.33
    speedup = (1 / (0.01 * 0.9)) / (94 / 3)
    rates = plugin.experience_rates(94)
    assert rates["stable"] == (pytest.approx(1 - 0.01 * speedup), 0.9)
    assert rates["plastic"] == (pytest.approx(1 - 0.02 * speedup), 1.0)
    assert rates["stable"][0] == pytest.approx(0.964539, abs=1e-6)  # 1 - 3 / (94 x 0.9)
    stable_horizon = 1 / ((1 - rates["stable"][0]) * 0.9)
    assert stable_horizon == pytest.approx(94 / 3)
    assert stable_horizon / (1 / (1 - rates["plastic"][0])) == pytest.approx(111.1 / 50, rel=1e-3)  # ratio kept


@pytest.mark.parametrize("steps, horizons", [(1200, 3.0), (469, 3.0), (94, None), (None, 3.0)])
def test_rates_unchanged_for_long_experiences_or_when_off(steps, horizons):
    """CLS-ER's lengths (S-MNIST at batch 10: ~1200 steps; P-MNIST at 128: 469) keep its rates."""
    plugin = _plugin(horizons=horizons)
    assert plugin.experience_rates(steps) == {"plastic": (0.99, 1.0), "stable": (0.99, 0.9)}


def test_a_memory_that_never_moves_does_not_set_the_scale():
    plugin = _plugin(plastic=(0.99, 1.0), stable=(0.99, 0.0))  # the stable memory is frozen
    rates = plugin.experience_rates(30)  # plastic horizon 100 -> 10 steps
    assert rates == {"plastic": (pytest.approx(0.9), 1.0), "stable": (pytest.approx(0.9), 0.0)}


def test_sleep_steps_per_experience_counts_the_schedule(trained):
    # tiny stream: 48 samples / batch 16 = 3 steps an epoch, 2 epochs = 6 wake steps;
    # a sleep every 2 of them (3) and one after the experience, 2 sleep steps each: 8
    strategy, _ = trained("strategy=sleep_cls", "epochs=2", "strategy.sleep_every=2",
                          "strategy.sleep_after_experience=true", "strategy.sleep_steps=2")
    plugin = strategy.cls_sleep
    assert plugin.rates == plugin.experience_rates(8) and plugin.consolidations == 8
    strategy, _ = trained("strategy=sleep_cls", "epochs=null", "iterations=4")  # the budget, not 4 epochs
    assert strategy.cls_sleep.rates == strategy.cls_sleep.experience_rates(4)
    assert strategy.cls_sleep.consolidations == 4


def _distance(a: nn.Module, b: nn.Module) -> float:
    return sum(float((p - q).detach().pow(2).sum()) for p, q in zip(a.parameters(), b.parameters())) ** 0.5


def test_stable_memory_follows_a_short_experience_closer_than_with_fixed_rates(trained):
    """15 steps, far shorter than the fixed horizon (~111 steps; warm-up makes it an average of all 15):
    with its horizon scaled to 5 steps the stable memory ends much nearer the working model."""
    results = {}
    for horizons in ("3", "null"):
        strategy, _ = trained("strategy=sleep_cls", "epochs=5", "seed=0",
                              f"strategy.horizons_per_experience={horizons}")
        results[horizons] = _distance(strategy.cls_sleep.memories["stable"], strategy.model)
    assert results["3"] < 0.6 * results["null"]


def test_sleep_batch_defaults_to_the_wake_batch_at_least_32(trained):
    seen = []
    strategy, _ = trained("strategy=sleep_cls", "batch_size=48")
    sample = strategy.cls_sleep.buffer.sample
    strategy.cls_sleep.buffer.sample = lambda n, generator=None: seen.append(n) or sample(n, generator)
    strategy.cls_sleep.sleep(strategy)
    strategy.train_mb_size = 8
    strategy.cls_sleep.sleep(strategy)
    assert seen == [48, 32]
