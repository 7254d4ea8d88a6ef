"""The harness's training options every strategy gets alike: ``iterations`` (a step budget per
experience) and ``active_classes=seen`` (class-IL softmax over the classes seen so far)."""
import pytest
import torch
from avalanche.core import SupervisedPlugin
from avalanche.training import Naive
from torch.nn import functional as F

import forgetbench
from forgetbench.benchmarks.experiment import ConfigError
from forgetbench.benchmarks.training import SeenClassesLoss


class Probe(SupervisedPlugin):
    """Counts each experience's training steps and keeps the output layer before and after each experience."""

    steps: list = []
    starts: list = []
    heads: list = []

    def before_training_exp(self, strategy, **kwargs):
        Probe.steps.append(0)
        Probe.starts.append(self.head(strategy))

    def after_training_iteration(self, strategy, **kwargs):
        Probe.steps[-1] += 1

    def after_training_exp(self, strategy, **kwargs):
        Probe.heads.append(self.head(strategy))

    @staticmethod
    def head(strategy):
        last = [m for m in strategy.model.modules() if isinstance(m, torch.nn.Linear)][-1]
        return last.weight.detach().clone(), last.bias.detach().clone()


class Probed(Naive):
    def __init__(self, *, plugins=None, **kwargs):
        super().__init__(plugins=[*(plugins or []), Probe()], **kwargs)


@pytest.fixture
def probed(clean_registry):
    Probe.steps, Probe.starts, Probe.heads = [], [], []
    forgetbench.register_strategy("_probed")(Probed)
    return Probe


def test_iterations_train_exactly_that_many_steps_per_experience_across_epochs(probed, tiny_cfg, tmp_path):
    # 48 samples, batch 16: 3 steps an epoch, so 7 steps end inside the third epoch
    record = forgetbench.run(tiny_cfg("strategy=_probed", "iterations=7", "epochs=null"), tmp_path / "r")
    assert probed.steps == [7] * 5
    assert record["config"]["iterations"] == 7 and record["config"]["epochs"] is None
    forgetbench.run(tiny_cfg("strategy=_probed", "epochs=2"), tmp_path / "e")
    assert probed.steps[5:] == [6] * 5  # epochs still mean epochs


def test_an_offline_strategy_gets_the_budget_of_every_experience(probed, tiny_cfg, tmp_path):
    from avalanche.training import JointTraining

    class ProbedJoint(JointTraining):
        def __init__(self, *, plugins=None, **kwargs):
            super().__init__(plugins=[*(plugins or []), Probe()], **kwargs)

    forgetbench.register_strategy("_probed_joint", offline=True)(ProbedJoint)
    forgetbench.run(tiny_cfg("strategy=_probed_joint", "iterations=4", "epochs=null"), tmp_path / "j")
    assert probed.steps == [4 * 5]


@pytest.mark.parametrize("budget, message", [
    (["iterations=7"], "epochs=1 and iterations=7: set exactly one budget per experience"),
    (["epochs=null"], "epochs=null and iterations=null: set exactly one budget"),
    (["active_classes=seen", "scenario=task"], "active_classes=seen: only for scenario=class"),
    (["active_classes=some"], "active_classes=some: must be one of"),
])
def test_budget_and_active_classes_are_checked_before_training(budget, message, tiny_cfg, tmp_path):
    with pytest.raises(ConfigError, match=message):
        forgetbench.run(tiny_cfg(*budget), tmp_path / "bad")


def test_seen_classes_loss_is_cross_entropy_over_the_seen_outputs_when_training_only():
    logits = torch.tensor([[2.0, 0.5, 3.0, -1.0], [0.1, 1.0, 4.0, 0.0]])
    targets = torch.tensor([0, 1])
    loss = SeenClassesLoss(4)
    loss.seen[[0, 1]] = True
    by_hand = F.cross_entropy(logits[:, :2], targets)  # outputs 2 and 3 not in the softmax
    assert loss(logits, targets).item() == pytest.approx(by_hand.item())
    loss.eval()
    assert loss(logits, targets).item() == pytest.approx(F.cross_entropy(logits, targets).item())


def test_with_seen_classes_only_the_seen_outputs_are_trained(probed, tiny_cfg, tmp_path):
    for active, moved in (("seen", 2), ("all", 10)):  # experience 0 holds 2 of the 10 classes
        Probe.starts, Probe.heads = [], []
        forgetbench.run(tiny_cfg("strategy=_probed", f"active_classes={active}"), tmp_path / active)
        (w0, b0), (w1, b1) = Probe.starts[0], Probe.heads[0]
        rows = ((w1 != w0).any(dim=1) | (b1 != b0)).sum().item()
        assert rows == moved, active
