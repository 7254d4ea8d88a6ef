"""sleep_src: exact checks of the conversion (dropout factor, biases, standardised inputs, maxima), of its
pieces (layer scales, STDP, the authors' loss and init), and tiny real runs."""
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from forgetbench.strategies.models import mlp
from forgetbench.strategies.sleep_src import (ReLUSquaredError, SleepSRC, SpikingSleep, keep_probabilities,
                                              layer_scales, linear_layers, stdp)
from tests.conftest import check_tiny_run, tiny_run

ALPHA = 55.882454


def _plugin(**kwargs):
    params = dict(iterations=0, increment=0, input_rate=239.515363, dt=0.001, inc=0.032064, dec=0.003344,
                  thresholds=(14.5, 44.5, 38.0), alpha_scale=ALPHA, decay=0.999, window=None,
                  weight_dependent=True, seed=0)
    return SpikingSleep(**{**params, **kwargs})


def _strategy(model, x, experience=0):
    return SimpleNamespace(model=model, dataloader=[(x, torch.zeros(len(x), dtype=torch.long))],
                           device=torch.device("cpu"), experience=SimpleNamespace(current_experience=experience))


def _capture(plugin, delta=0.0):
    """Replace the simulation: record its arguments and add ``delta`` to every weight (a stand-in for STDP)."""
    seen = {}

    def run(weights, alphas, mean_input, steps, device, currents=None):
        seen.update(weights=[w.clone() for w in weights], alphas=list(alphas), mean_input=mean_input.clone(),
                    currents=currents)
        for w in weights:
            w.add_(delta)

    plugin.run = run
    return seen


@torch.no_grad()
def _maxima(model, x):
    """Each Linear layer's max output in eval mode."""
    model.eval()
    out, h = [], x.flatten(1)
    layers = linear_layers(model)
    for i, layer in enumerate(layers):
        h = layer(h)
        out.append(float(h.max()))
        h = torch.relu(h)
    return out


def _authors_alphas(weights, maxima):
    s = [max(float(w.max().clamp(min=0)), a) for w, a in zip(weights, maxima)]
    return [ALPHA / s[0], ALPHA * s[0] / s[1], ALPHA * (s[1] / s[0]) / s[2]]  # normalize_nn_data.m


def test_keep_probabilities_follow_the_dropout_before_each_layer():
    net = mlp((1, 4, 4), num_outputs=5, hidden_sizes=[8, 6], bias=False, dropout=0.25, input_dropout=0.5)
    assert keep_probabilities(net) == [1.0, 0.75, 0.75]  # input dropout: no test-time factor either way
    assert keep_probabilities(mlp((1, 4, 4), 5, hidden_sizes=[8, 6])) == [1.0, 1.0, 1.0]


@pytest.mark.parametrize("correction", [True, False])
def test_dropout_factor_enters_the_scales_as_in_the_authors_non_inverted_network(correction):
    torch.manual_seed(0)
    net = mlp((1, 4, 4), num_outputs=5, hidden_sizes=[8, 6], bias=False, dropout=0.25)
    x = torch.rand(32, 1, 4, 4)
    before = [layer.weight.detach().clone() for layer in linear_layers(net)]
    maxima = _maxima(net, x)
    plugin = _plugin(dropout_correction=correction)
    seen = _capture(plugin, delta=0.01)
    plugin.sleep(_strategy(net, x))
    k = 0.75 if correction else 1.0
    # the authors' network computing the same function: W2, W3 / (1 - p); test-time hidden activations x (1 - p)
    authors_w = [before[0], before[1] / k, before[2] / k]
    authors_max = [maxima[0] * k, maxima[1] * k, maxima[2]]
    for got, want in zip(seen["weights"], authors_w):
        assert torch.allclose(got, want)
    assert seen["alphas"] == pytest.approx(_authors_alphas(authors_w, authors_max))
    assert seen["currents"] == [None, None, None]  # no biases, raw inputs
    assert torch.allclose(seen["mean_input"], x.mean(0))
    # a change made in the authors' parametrisation comes back times (1 - p) after a dropout
    after = [layer.weight.detach() for layer in linear_layers(net)]
    for got, w, keep in zip(after, before, [1.0, k, k]):
        assert torch.allclose(got, w + 0.01 * keep, atol=1e-6)


def test_dropout_correction_raises_every_layers_current_by_one_over_keep_when_activations_dominate():
    torch.manual_seed(1)
    net = mlp((1, 4, 4), num_outputs=5, hidden_sizes=[8, 6], bias=False, dropout=0.25)
    x = 20 * torch.rand(32, 1, 4, 4)  # activations >> weights: the maxima set every scale
    currents = {}
    for correction in (True, False):
        plugin = _plugin(dropout_correction=correction)
        seen = _capture(plugin)
        plugin.sleep(_strategy(net, x))
        currents[correction] = [a * float(w.abs().sum()) for a, w in zip(seen["alphas"], seen["weights"])]
    for on, off in zip(currents[True], currents[False]):
        assert on / off == pytest.approx(1 / 0.75, rel=1e-5)


def test_biases_and_standardised_inputs_become_the_same_network_on_raw_inputs():
    torch.manual_seed(0)
    net = mlp((1, 4, 4), num_outputs=5, hidden_sizes=[8, 6], bias=True)
    raw = torch.rand(32, 1, 4, 4)
    raw[0, 0, 0, 0], raw[1, 0, 0, 0] = 0.0, 1.0
    x = (raw - 0.3) / 0.5  # standardised: lo = -0.6, hi = 1.4, span 2
    w1, b1 = net.backbone.layers[1].weight.detach().clone(), net.backbone.layers[1].bias.detach().clone()
    biases = [layer.bias.detach().clone() for layer in linear_layers(net)]
    maxima = _maxima(net, x)
    plugin = _plugin(bias_current=1.0)
    seen = _capture(plugin, delta=0.01)
    plugin.sleep(_strategy(net, x))
    assert torch.allclose(seen["mean_input"], raw.mean(0), atol=1e-6)  # spikes follow the raw mean image
    assert torch.allclose(seen["weights"][0], 2 * w1)
    b_raw = b1 - 0.6 * w1.sum(1)  # b + W lo
    assert torch.allclose(seen["weights"][0] @ raw[5].flatten() + b_raw, w1 @ x[5].flatten() + b1, atol=1e-5)
    raw_biases = [b_raw, *biases[1:]]
    alphas = [s * ALPHA for s in layer_scales(seen["weights"], maxima, raw_biases)]
    assert seen["alphas"] == pytest.approx(alphas)
    for current, a, b in zip(seen["currents"], alphas, raw_biases):  # a constant input of weight b
        assert torch.allclose(current, a * b * 2 * 0.001 * 239.515363, atol=1e-6)  # at a full pixel's rate
    # after sleep the model computes the slept raw-input network on the standardised input
    layer = net.backbone.layers[1]
    slept = (seen["weights"][0] + 0.01) @ raw[5].flatten() + b_raw
    assert torch.allclose(layer(x[5].flatten()[None])[0], slept, atol=1e-5)
    assert torch.equal(linear_layers(net)[1].bias, biases[1])  # sleep changes no other bias


def test_bias_current_drives_spikes_and_stdp_without_input():
    w = [torch.zeros(3, 4), torch.zeros(2, 3)]
    plugin = _plugin(thresholds=(1.0, 1.0), inc=0.1, dec=0.01, weight_dependent=False)
    plugin.run(w, [1.0, 1.0], torch.zeros(4), steps=1, device="cpu",
               currents=[torch.tensor([2.0, 0.5, 0.0]), None])
    # neuron 0 reaches threshold from its bias alone; its input did not fire: its weights shrink by dec
    assert torch.allclose(w[0][0], torch.full((4,), -0.01)) and torch.equal(w[0][1:], torch.zeros(2, 4))
    assert torch.equal(w[1], torch.tensor([[0.0, 0.0, 0.0]] * 2))  # no current reached layer 2
    w = [torch.zeros(3, 4), torch.zeros(2, 3)]
    plugin.run(w, [1.0, 1.0], torch.zeros(4), steps=1, device="cpu", currents=None)
    assert torch.equal(w[0], torch.zeros(3, 4))


def test_running_maxima_keep_the_largest_of_the_experiences():
    torch.manual_seed(0)
    net = mlp((1, 4, 4), num_outputs=5, hidden_sizes=[8, 6], bias=False)
    big, small = torch.rand(16, 1, 4, 4), 0.1 * torch.rand(16, 1, 4, 4)
    expected = {"running": _maxima(net, big), "experience": _maxima(net, small)}
    for mode, want in expected.items():
        plugin = _plugin(maxima=mode)
        seen = _capture(plugin)
        plugin.sleep(_strategy(net, big))
        plugin.sleep(_strategy(net, small, experience=1))
        assert seen["alphas"] == pytest.approx(_authors_alphas(seen["weights"], want))


def test_authors_loss_backpropagates_relu_output_minus_target():
    z = torch.tensor([[0.5, -1.0, 2.0], [-0.2, 0.3, 1.5]], requires_grad=True)
    y = torch.tensor([2, 0])
    loss = ReLUSquaredError()(z, y)
    loss.backward()
    onehot = torch.tensor([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0]])
    assert torch.allclose(z.grad, (torch.relu(z.detach()) - onehot) / 2)  # their nnbp: d{n} = -(y - a), / m
    # row 0: the squared error 1/2 (0.25 + 0 + 1); row 1 (target logit -0.2 < 0): 0.2 + 1/2 + 1/2 (0.09 + 2.25)
    assert float(loss.detach()) == pytest.approx((0.625 + 1.87) / 2)


def test_authors_init_and_loss_options():
    torch.manual_seed(0)
    net = mlp((1, 4, 4), num_outputs=5, hidden_sizes=[8, 6], bias=True)
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
    strategy = SleepSRC(model=net, optimizer=optimizer, criterion=nn.CrossEntropyLoss(), init="authors",
                        loss="authors")
    for layer in linear_layers(net):
        assert layer.weight.abs().max() <= 0.01 and layer.weight.std() > 0.004  # uniform in +-0.01
        assert torch.equal(layer.bias, torch.zeros_like(layer.bias))
    assert isinstance(strategy._criterion, ReLUSquaredError)
    with pytest.raises(ValueError, match="replaces the plain cross-entropy"):
        SleepSRC(model=net, optimizer=optimizer, criterion=nn.MSELoss(), loss="authors")


def test_layer_scales_follow_the_authors_normalization_and_keep_the_argmax():
    torch.manual_seed(0)
    net = mlp((1, 4, 4), num_outputs=5, hidden_sizes=[8, 6], bias=False)
    x = torch.rand(32, 1, 4, 4)
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


def test_layer_scales_count_a_bias_as_a_weight():
    weights = [torch.tensor([[0.1, 0.2]]), torch.tensor([[0.3]])]
    assert layer_scales(weights, [0.05, 0.01], [torch.tensor([0.4]), None]) == pytest.approx([1 / 0.4, 0.4 / 0.3])


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


@pytest.mark.parametrize("scenario", ["class", "domain"])
def test_sleep_src_tiny_run(tmp_path, scenario):
    check_tiny_run(tiny_run(tmp_path, "sleep_src", scenario, ["model.bias=false", "stream.normalize=false",
                                                              "strategy.iterations=200", "strategy.increment=50"]))


def test_sleep_src_tiny_run_with_biases_and_standardised_inputs(tmp_path):
    record = tiny_run(tmp_path, "sleep_src", "class", ["strategy.iterations=200", "strategy.increment=50"])
    acc = torch.tensor(record["accuracy_matrix"])
    assert record["status"] == "ok" and not acc.isnan().any()


def test_sleep_src_refuses_task_il(tmp_path):
    from forgetbench.benchmarks.experiment import ConfigError

    with pytest.raises(ConfigError, match="does not support the 'task' scenario"):
        tiny_run(tmp_path, "sleep_src", "task", ["model.bias=false"])


def test_sleep_src_refuses_permuted_streams_naming_the_alternatives_unless_allowed(tmp_path, capfd):
    from forgetbench.benchmarks.experiment import ConfigError

    short = ["stream=permuted_mnist", "stream.n_experiences=2", "strategy.iterations=200", "strategy.increment=50"]
    with pytest.raises(ConfigError, match=r"worse than no consolidation .* choose strategy=sleep_cls or sleep_dream, "
                                          r"or a split stream .* \(allow_refused=true runs it anyway\)"):
        tiny_run(tmp_path / "refused", "sleep_src", "domain", short)
    record = tiny_run(tmp_path / "allowed", "sleep_src", "domain", [*short, "allow_refused=true"])
    assert record["status"] == "ok" and "running it anyway (allow_refused=true)" in capfd.readouterr().err


def test_sleep_src_needs_one_threshold_per_layer(tmp_path):
    with pytest.raises(ValueError, match="3 thresholds for 2 Linear layers"):
        tiny_run(tmp_path, "sleep_src", "class", ["model.bias=false", "model.hidden_sizes=[8]"])
