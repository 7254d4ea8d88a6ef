"""EWC: the per-sample Fisher estimators against hand computations and against Avalanche's batch
estimator, the penalty's lambda/2 convention, the merged penalty against the term-by-term sum it
replaces (value and gradient), task-IL multi-head models, and a run matching Avalanche's own EWC."""
import types

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F

from forgetbench.benchmarks.experiment import run
from forgetbench.strategies.ewc import MergedEWCPlugin, fisher_diagonal
from forgetbench.strategies.models import mlp

METHODS = ["auto", "vmap", "loop"]


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


def _randomize(model, gen):
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=gen))


# the merged penalty

def test_separate_penalty_is_the_sum_over_experiences_value_and_gradient():
    gen = torch.Generator().manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 4), nn.ReLU(), nn.Linear(4, 3))
    plugin = MergedEWCPlugin(ewc_lambda=1.0, mode="separate")
    history = _consolidate_random(plugin, model, 4, gen)
    _randomize(model, gen)
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


@pytest.mark.parametrize("mode", ["separate", "online"])
def test_the_loss_gets_lambda_over_2_times_the_fisher_weighted_squared_distance(mode):
    """EWC: (lambda/2) sum_k F_k (theta - theta_k)^2, as Kirkpatrick et al. and van de Ven & Tolias write it;
    online EWC: (lambda/2) gamma F* (theta - theta_last)^2 with F* = gamma F*_prev + F (Schwarz et al.)."""
    model = nn.Linear(2, 1, bias=False)
    plugin = MergedEWCPlugin(ewc_lambda=10.0, mode=mode, decay_factor=0.5 if mode == "online" else None)
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[1.0, 2.0]]))
    plugin.consolidate(model, {"weight": torch.tensor([[3.0, 0.0]])})
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[0.0, 4.0]]))
    plugin.consolidate(model, {"weight": torch.tensor([[1.0, 2.0]])})
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[2.0, 1.0]]))
    strategy = types.SimpleNamespace(model=model, loss=torch.tensor(0.0))
    plugin.before_backward(strategy)
    if mode == "separate":  # 3 (2-1)^2 + 0 + 1 (2-0)^2 + 2 (1-4)^2 = 3 + 4 + 18
        by_hand = 10.0 / 2 * (3 * 1 + 1 * 4 + 2 * 9)
    else:  # F* = 0.5 [3, 0] + [1, 2] = [2.5, 2], anchored at [0, 4]; times gamma
        by_hand = 10.0 / 2 * 0.5 * (2.5 * 4 + 2 * 9)
    assert strategy.loss.item() == pytest.approx(by_hand)


# the per-sample Fisher against hand computations

def _softmax_regression():
    """A 3-input, 3-class linear model with fixed weights and four samples: the last one is misclassified."""
    model = nn.Linear(3, 3)
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[2.0, 0.0, 0.0], [0.0, 2.0, 0.0], [0.0, 0.0, 2.0]]))
        model.bias.copy_(torch.tensor([0.1, -0.2, 0.0]))
    x = torch.tensor([[1.0, 0.0, 0.5], [0.0, 1.5, 0.0], [0.2, 0.1, 1.0], [1.0, 0.2, 0.0]])
    y = torch.tensor([0, 1, 2, 1])  # predictions: 0, 1, 2, 0
    return model, x, y, torch.zeros(4, dtype=torch.long)


def _hand_fisher(model, x, label_weights):
    """The per-sample Fisher of softmax regression: the gradient of -log p_c is (p - e_c) x^T (weight) and
    p - e_c (bias); ``label_weights[i, c]`` weighs label c of sample i."""
    with torch.no_grad():
        p = (x @ model.weight.T + model.bias).softmax(1)
    w, b = torch.zeros_like(model.weight), torch.zeros_like(model.bias)
    for i in range(len(x)):
        for c in range(p.shape[1]):
            d = p[i] - F.one_hot(torch.tensor(c), p.shape[1]).float()
            w += label_weights[i, c] * torch.outer(d, x[i]) ** 2
            b += label_weights[i, c] * d ** 2
    return {"weight": w / len(x), "bias": b / len(x)}


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("estimator", ["empirical", "predicted", "expected"])
def test_the_per_sample_fisher_is_the_mean_squared_log_likelihood_gradient(estimator, method):
    model, x, y, t = _softmax_regression()
    with torch.no_grad():
        p = model(x).softmax(1)
    weights = {"empirical": F.one_hot(y, 3).float(), "predicted": F.one_hot(p.argmax(1), 3).float(), "expected": p}
    fisher = fisher_diagonal(model, x, y, t, estimator=estimator, method=method)
    for name, value in _hand_fisher(model, x, weights[estimator]).items():
        torch.testing.assert_close(fisher[name], value, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("estimator", ["empirical", "predicted", "expected"])
def test_with_a_class_mask_the_fisher_is_that_of_the_model_without_the_masked_outputs(estimator):
    """active_classes=seen: the softmax covers the seen classes only (van de Ven's allowed_classes)."""
    model, x, y, t = _softmax_regression()
    with torch.no_grad():
        model.weight[2].fill_(3.0)  # unmasked, class 2 would be every sample's prediction
    x, y, t = x[:2], y[:2], t[:2]  # labels 0 and 1
    assert (model(x).argmax(1) == 2).all()
    two = nn.Linear(3, 2)
    with torch.no_grad():
        two.weight.copy_(model.weight[:2]), two.bias.copy_(model.bias[:2])
    masked = fisher_diagonal(model, x, y, t, estimator=estimator, classes=torch.tensor([True, True, False]))
    restricted = fisher_diagonal(two, x, y, t, estimator=estimator)
    torch.testing.assert_close(masked["weight"][:2], restricted["weight"])
    torch.testing.assert_close(masked["bias"][:2], restricted["bias"])
    assert (masked["weight"][2] == 0).all() and masked["bias"][2] == 0


def test_empirical_and_predicted_differ_only_on_misclassified_samples():
    model, x, y, t = _softmax_regression()
    right, wrong = slice(0, 3), slice(3, 4)
    same = [fisher_diagonal(model, x[right], y[right], t[right], estimator=e) for e in ("empirical", "predicted")]
    differ = [fisher_diagonal(model, x[wrong], y[wrong], t[wrong], estimator=e) for e in ("empirical", "predicted")]
    for name in ("weight", "bias"):
        torch.testing.assert_close(same[0][name], same[1][name], rtol=0, atol=0)
        assert differ[0][name].sum() > 2 * differ[1][name].sum()  # the true label's gradient is the large one


class _ConstantData(torch.utils.data.Dataset):
    """(x, y, task) samples, as forgetbench's experience datasets give them."""

    def __init__(self, x, y):
        self.x, self.y = x, y

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return self.x[i], self.y[i], 0


def _batch_fisher(model, dataset, batch_size):
    plugin = MergedEWCPlugin(1.0, fisher="batch")
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)
    imp = plugin.compute_importances(model, nn.CrossEntropyLoss(), optimizer, dataset, "cpu", batch_size)
    return {n: v.data for n, v in imp.items()}


def test_avalanches_batch_estimator_is_the_per_sample_fisher_over_the_batch_size_on_a_hand_case():
    """The batch estimator squares the gradient of the batch-mean loss. Where the per-sample gradients
    of a batch have disjoint supports (one-hot inputs, no bias) the cross terms vanish and it is exactly
    the per-sample Fisher / B; for B copies of one sample it is exactly the per-sample Fisher."""
    n, batch = 12, 4
    model = nn.Linear(n, 3, bias=False)
    with torch.no_grad():
        model.weight.copy_(torch.randn(3, n, generator=torch.Generator().manual_seed(0)))
    x, y = torch.eye(n), torch.arange(n) % 3
    per_sample = fisher_diagonal(model, x, y, torch.zeros(n, dtype=torch.long), estimator="empirical")["weight"]
    batched = _batch_fisher(model, _ConstantData(x, y), batch)["weight"]
    torch.testing.assert_close(batched, per_sample / batch, rtol=1e-5, atol=1e-9)
    copies = _batch_fisher(model, _ConstantData(x[[1] * batch], y[[1] * batch]), batch)["weight"]
    one = fisher_diagonal(model, x[1:2], y[1:2], torch.zeros(1, dtype=torch.long), estimator="empirical")["weight"]
    torch.testing.assert_close(copies, one, rtol=1e-5, atol=1e-9)


def _strategy(model, dataset, batch_size):
    """What MergedEWCPlugin.after_training_exp reads from a strategy."""
    return types.SimpleNamespace(model=model, experience=types.SimpleNamespace(dataset=dataset, current_experience=0),
                                 device="cpu", train_mb_size=batch_size, _criterion=nn.CrossEntropyLoss(),
                                 optimizer=torch.optim.SGD(model.parameters(), lr=0.0))


@pytest.mark.parametrize("estimator", ["predicted", "empirical", "expected"])
def test_the_fisher_does_not_depend_on_the_batch_size(estimator):
    gen = torch.Generator().manual_seed(2)
    torch.manual_seed(2)
    model = mlp((1, 4, 4), 3, hidden_sizes=(8,))
    x, y = torch.randn(128, 1, 4, 4, generator=gen), torch.randint(0, 3, (128,), generator=gen)
    dataset = _ConstantData(x, y)
    curvature, batch = {}, {}
    for size in (32, 128):
        plugin = MergedEWCPlugin(1.0, fisher=estimator)
        plugin.after_training_exp(_strategy(model, dataset, size))
        curvature[size] = torch.cat([a.flatten() for a in plugin.curvature.values()])
        batch[size] = torch.cat([f.flatten() for f in _batch_fisher(model, dataset, size).values()])
    torch.testing.assert_close(curvature[32], curvature[128], rtol=1e-5, atol=1e-10)
    assert batch[32].sum() > 1.2 * batch[128].sum()  # Avalanche's grows as the batch shrinks
    chunks = [fisher_diagonal(model, x, y, torch.zeros(128, dtype=torch.long), estimator=estimator, chunk_size=c)
              for c in (7, 128)]
    for name in chunks[0]:
        torch.testing.assert_close(chunks[0][name], chunks[1][name], rtol=1e-5, atol=1e-10)


def test_the_three_ways_to_compute_it_agree_on_a_multi_head_model():
    """Task-IL: each sample's gradient goes through its own task's head; the heads of absent tasks get 0."""
    gen = torch.Generator().manual_seed(3)
    model = mlp((1, 4, 4), 2, num_heads=4, hidden_sizes=(8, 6))
    x, y = torch.randn(40, 1, 4, 4, generator=gen), torch.randint(0, 2, (40,), generator=gen)
    t = torch.randint(0, 3, (40,), generator=gen)  # task 3 absent
    before = list(model.parameters())
    results = [fisher_diagonal(model, x, y, t, estimator="expected", method=m) for m in METHODS]
    assert all(a is b for a, b in zip(before, model.parameters()))
    for other in results[1:]:
        for name in results[0]:
            torch.testing.assert_close(results[0][name], other[name], rtol=1e-4, atol=1e-10)
    head = results[0]["head.weight"]
    assert (head[:3].flatten(1).sum(1) > 0).all() and (head[3] == 0).all()
    # by hand for the heads: sample i's gradient lands in head t_i only
    single = fisher_diagonal(model, x[t == 1], y[t == 1], t[t == 1], estimator="expected")["head.weight"]
    torch.testing.assert_close(head[1], single[1] * (t == 1).sum() / len(t), rtol=1e-5, atol=1e-10)


def test_the_linear_shortcut_handles_in_place_activations_shared_and_unused_layers():
    gen = torch.Generator().manual_seed(6)
    shared = nn.Linear(5, 5)
    model = nn.Sequential(nn.Linear(4, 5), nn.ReLU(inplace=True), shared, nn.Tanh(), shared, nn.Linear(5, 3))
    x, y = torch.randn(30, 4, generator=gen), torch.randint(0, 3, (30,), generator=gen)
    t = torch.zeros(30, dtype=torch.long)
    before = list(model.parameters())
    auto, loop = (fisher_diagonal(model, x, y, t, estimator="expected", method=m) for m in ("auto", "loop"))
    for name in loop:
        torch.testing.assert_close(auto[name], loop[name], rtol=1e-4, atol=1e-10)
    # the model keeps its own parameters (functional_call on a shared module would not)
    assert all(a is b and isinstance(b, nn.Parameter) for a, b in zip(before, model.parameters()))


def test_a_model_vmap_cannot_transform_falls_back_to_one_pass_per_sample():
    class Checked(nn.Module):  # reads a value inside forward: data-dependent, refused by vmap
        def __init__(self):
            super().__init__()
            self.linear = nn.Linear(3, 2)
            self.scale = nn.Parameter(torch.ones(()))

        def forward(self, x):
            if x.abs().max().item() > 1e6:
                raise ValueError("out of range")
            return self.linear(x) * self.scale

    gen = torch.Generator().manual_seed(4)
    model = Checked()
    x, y = torch.randn(16, 3, generator=gen), torch.randint(0, 2, (16,), generator=gen)
    plugin = MergedEWCPlugin(1.0, fisher="empirical")
    with pytest.warns(UserWarning, match="one backward pass per sample"):
        fisher = plugin.sample_fisher(model, _ConstantData(x, y), "cpu")
    expected = fisher_diagonal(model, x, y, torch.zeros(16, dtype=torch.long), estimator="empirical", method="loop")
    for name in expected:
        torch.testing.assert_close(fisher[name], expected[name])


def test_fisher_samples_draws_a_subset_without_touching_the_global_random_state():
    gen = torch.Generator().manual_seed(5)
    model = nn.Linear(3, 2)
    dataset = _ConstantData(torch.randn(50, 3, generator=gen), torch.randint(0, 2, (50,), generator=gen))
    state = torch.get_rng_state()
    first = MergedEWCPlugin(1.0, fisher_samples=10).sample_fisher(model, dataset, "cpu", seed=1)
    again = MergedEWCPlugin(1.0, fisher_samples=10).sample_fisher(model, dataset, "cpu", seed=1)
    full = MergedEWCPlugin(1.0).sample_fisher(model, dataset, "cpu", seed=1)
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(first["weight"], again["weight"]) and not torch.allclose(first["weight"], full["weight"])


def _ewc(strategy) -> MergedEWCPlugin:
    return next(p for p in strategy.plugins if isinstance(p, MergedEWCPlugin))


def test_task_labels_reach_the_multi_head_model_in_a_task_il_run(trained):
    ewc = _ewc(trained("strategy=ewc", "scenario=task")[0])
    head = ewc.curvature["head.weight"]
    assert head[0].sum() > 0 and (head[1:] == 0).all()  # experience 0 trains (and is measured on) head 0 only
    assert (ewc.curvature["backbone.layers.1.weight"] > 0).float().mean() > 0.5


@pytest.mark.parametrize("active", ["seen", "all"])
def test_with_active_classes_seen_the_fisher_covers_the_seen_classes(active, trained):
    strategy, classes = trained("strategy=ewc", f"active_classes={active}")
    ewc = _ewc(strategy)
    rows = ewc.curvature["head.weight"].sum(1)
    seen = torch.zeros(10, dtype=torch.bool)
    seen[list(classes)] = True
    assert (rows[seen] > 0).all()
    assert (rows[~seen] == 0).all() if active == "seen" else (rows[~seen] > 0).all()


# Avalanche's EWC, reproduced with fisher=batch

@pytest.mark.parametrize("mode", ["ewc", "online_ewc"])
def test_a_run_with_the_batch_estimator_matches_avalanches_ewc(mode, mnist_root, tmp_path, tiny_cfg):
    """Avalanche adds lambda_A F (theta - theta*)^2 (online: with its running F, no gamma in front), so
    ours with ``fisher=batch`` and lambda = 2 lambda_A (online: 2 lambda_A / gamma) is the same loss."""
    ours = ["strategy.fisher=batch", "strategy.ewc_lambda=2000.0"]
    theirs = ["strategy=avalanche", "strategy.cls=EWC", "strategy.ewc_lambda=1000.0"]
    if mode == "online_ewc":  # (2000 / 2) * 0.5 = 500
        ours += ["strategy.decay_factor=0.5"]
        theirs = theirs[:2] + ["strategy.ewc_lambda=500.0", "strategy.mode=online", "strategy.decay_factor=0.5",
                               "strategy.keep_importance_data=false"]
    ours = run(tiny_cfg(f"strategy={mode}", *ours), tmp_path / "ours")
    theirs = run(tiny_cfg(*theirs), tmp_path / "avalanche")
    naive = run(tiny_cfg("strategy=naive"), tmp_path / "naive")
    assert ours["status"] == theirs["status"] == "ok"
    assert (ours["strategy"], theirs["strategy"]) == (mode, "avalanche.EWC")
    # same gradients up to float rounding: here the matrices come out identical, and not naive's
    np.testing.assert_allclose(ours["accuracy_matrix"], theirs["accuracy_matrix"], atol=1e-9)
    assert not np.array_equal(ours["accuracy_matrix"], naive["accuracy_matrix"])
