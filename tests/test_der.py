"""DER and DER++ as Mammoth runs them (strategies/der.py): the loss of one step computed by hand, and what
a trained strategy keeps: every training sample offered to a reservoir, each stored with the logits of the
forward pass it was trained in."""
from types import SimpleNamespace

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from forgetbench.strategies.der import DarkReplayPlugin


def _step_loss(plugin: DarkReplayPlugin, model: nn.Module, x, y, t, *, batch_size: int = 4):
    """The loss ``plugin`` makes for one training step on ``(x, y, t)`` (one forward, as the template does)."""
    strategy = SimpleNamespace(model=model, mb_x=x, mb_y=y, mb_task_id=t, train_mb_size=batch_size,
                               _criterion=nn.CrossEntropyLoss())
    strategy.mb_output = model(x)
    strategy.loss = F.cross_entropy(strategy.mb_output, y)
    plugin.before_backward(strategy)
    plugin.after_training_iteration(strategy)
    return strategy.loss, strategy.mb_output


@pytest.mark.parametrize("alpha,beta", [(0.3, 0.0), (0.3, 0.7)])
def test_the_loss_adds_logit_mse_and_label_ce_on_two_independent_replayed_batches(alpha, beta):
    torch.manual_seed(0)
    model = nn.Linear(5, 3)
    plugin = DarkReplayPlugin(mem_size=8, batch_size_mem=4, alpha=alpha, beta=beta, seed=1)
    x0, y0, t0 = torch.randn(6, 5), torch.tensor([0, 1, 2, 0, 1, 2]), torch.zeros(6, dtype=torch.long)
    first, out0 = _step_loss(plugin, model, x0, y0, t0)  # empty buffer: the plain cross-entropy
    assert first.item() == pytest.approx(F.cross_entropy(out0, y0).item())
    assert len(plugin.buffer) == 6 and torch.equal(plugin.buffer.stored()[3], out0.detach())

    x1, y1, t1 = torch.randn(6, 5), torch.tensor([2, 2, 1, 1, 0, 0]), torch.zeros(6, dtype=torch.long)
    draws = torch.Generator().manual_seed(1)  # the plugin's generator, replayed: its first two draws
    stored_x, stored_y, _, stored_logits = plugin.buffer.stored()
    a = torch.randperm(6, generator=draws)[:4]
    b = torch.randperm(6, generator=draws)[:4]
    expected = F.cross_entropy(model(x1), y1) + alpha * F.mse_loss(model(stored_x[a]), stored_logits[a])
    if beta:
        expected = expected + beta * F.cross_entropy(model(stored_x[b]), stored_y[b])
    loss, _ = _step_loss(plugin, model, x1, y1, t1)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)
    assert plugin.buffer.seen == 12 and len(plugin.buffer) == 8


@pytest.mark.parametrize("name,beta", [("der", 0.0), ("derpp", 0.5)])
def test_every_sample_is_offered_with_the_logits_it_was_trained_with(name, beta, trained):
    """With a learning rate too small to move the weights (the config refuses 0), so a stored row's logits are the model's output on its input;
    with a real lr they are the logits of the step it was trained in, not the final model's (Avalanche's
    DER stores the end-of-experience model's)."""
    frozen, classes = trained(f"strategy={name}", "strategy.mem_size=20", "optimizer.lr=1e-12")
    replay = frozen.dark_replay
    assert replay.beta == beta and replay.buffer.seen == 48 and len(replay.buffer) == 20  # 48 samples seen
    x, y, _, logits = replay.buffer.stored()
    assert set(y.tolist()) <= classes and logits.shape == (20, 10)
    with torch.no_grad():
        assert torch.allclose(frozen.model(x), logits, atol=1e-6)

    learning, _ = trained(f"strategy={name}", "strategy.mem_size=20", "optimizer.lr=0.05")
    x, _, _, logits = learning.dark_replay.buffer.stored()
    with torch.no_grad():
        assert not torch.allclose(learning.model(x), logits, atol=1e-3)
