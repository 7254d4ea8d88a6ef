"""EWC's merged penalty equals the term-by-term sum it replaces (value and gradient), and a run
with it matches Avalanche's own EWC."""
import numpy as np
import pytest
import torch
from torch import nn

from forgetbench.benchmarks.experiment import run
from forgetbench.strategies.ewc import MergedEWCPlugin


def _consolidate_random(plugin, model, n_exp, gen):
    """``n_exp`` experiences, each ending at random parameters with a random Fisher (some entries
    exactly 0), consolidated into ``plugin``; returns [(parameters, fisher)] per experience."""
    history = []
    for _ in range(n_exp):
        with torch.no_grad():
            for p in model.parameters():
                p.copy_(torch.randn(p.shape, generator=gen))
        fishers = {n: torch.rand(p.shape, generator=gen) * (torch.rand(p.shape, generator=gen) > 0.3)
                   for n, p in model.named_parameters()}
        plugin.consolidate(model, fishers)
        history.append(({n: p.detach().clone() for n, p in model.named_parameters()}, fishers))
    return history


def test_separate_penalty_is_the_sum_over_experiences_value_and_gradient():
    gen = torch.Generator().manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 4), nn.ReLU(), nn.Linear(4, 3))
    plugin = MergedEWCPlugin(ewc_lambda=1.0, mode="separate")
    history = _consolidate_random(plugin, model, 4, gen)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=gen))
    merged = plugin.penalty(model)
    g_merged = torch.autograd.grad(merged, list(model.parameters()))
    by_hand = sum((f[n] * (p - theta[n]) ** 2).sum() for theta, f in history for n, p in model.named_parameters())
    g_hand = torch.autograd.grad(by_hand, list(model.parameters()))
    assert merged.item() == pytest.approx(by_hand.item(), rel=1e-5)
    for a, b in zip(g_merged, g_hand):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_online_penalty_decays_the_fisher_and_anchors_at_the_last_parameters():
    gen = torch.Generator().manual_seed(1)
    model = nn.Linear(3, 2)
    plugin = MergedEWCPlugin(ewc_lambda=1.0, mode="online", decay_factor=0.5)
    history = _consolidate_random(plugin, model, 3, gen)
    with torch.no_grad():
        model.weight.add_(1.0)
    t2 = history[2][0]
    f0, f1, f2 = (fishers for _, fishers in history)
    expected = sum(((0.25 * f0[n] + 0.5 * f1[n] + f2[n]) * (p - t2[n]) ** 2).sum() for n, p in model.named_parameters())
    assert plugin.penalty(model).item() == pytest.approx(expected.item(), rel=1e-5)


def test_a_parameter_that_grows_is_penalized_only_on_its_old_entries():
    model = nn.Linear(2, 2)
    plugin = MergedEWCPlugin(ewc_lambda=1.0)
    with torch.no_grad():
        model.weight.zero_(), model.bias.zero_()
    plugin.consolidate(model, {"weight": torch.ones(2, 2), "bias": torch.ones(2)})
    model = nn.Linear(2, 3)  # one new output unit
    with torch.no_grad():
        model.weight.fill_(1.0), model.bias.fill_(1.0)
    assert plugin.penalty(model).item() == pytest.approx(4 + 2)  # the new row (3 ones) is free


@pytest.mark.parametrize("mode", ["ewc", "online_ewc"])
def test_a_run_matches_avalanches_ewc(mode, mnist_root, tmp_path, tiny_cfg):
    ours = run(tiny_cfg(f"strategy={mode}"), tmp_path / "ours")
    theirs = ["strategy=avalanche", "strategy.cls=EWC", "strategy.ewc_lambda=1000.0"]
    if mode == "online_ewc":
        theirs += ["strategy.mode=online", "strategy.decay_factor=0.9", "strategy.keep_importance_data=false"]
    theirs = run(tiny_cfg(*theirs), tmp_path / "avalanche")
    assert ours["status"] == theirs["status"] == "ok"
    assert (ours["strategy"], theirs["strategy"]) == (mode, "avalanche.EWC")
    # same gradients up to float rounding: here the matrices come out identical (naive's differs by 0.125)
    np.testing.assert_allclose(ours["accuracy_matrix"], theirs["accuracy_matrix"], atol=1e-9)
