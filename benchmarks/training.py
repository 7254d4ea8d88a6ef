"""Training budget and loss options the harness gives every strategy alike (config keys
``iterations`` and ``active_classes``), as Avalanche plugins.

- :class:`IterationBudget`: ``iterations=N`` trains each experience for exactly N steps, however many
  epochs that takes (the papers' budget: van de Ven & Tolias 2019 train 2,000 iterations per task on
  Split-MNIST, 5,000 on Permuted-MNIST); an offline strategy (joint) gets N x T steps in its one pass.
- :class:`SeenClassesLoss` + :class:`ActiveClasses`: ``active_classes=seen`` (class-IL) computes the
  training cross-entropy over the classes seen so far only, van de Ven's "active classes"; evaluation
  always uses every output.
"""
from __future__ import annotations

import torch
from avalanche.core import SupervisedPlugin
from torch.nn import functional as F

from forgetbench.benchmarks.protocol import classes_of


class IterationBudget(SupervisedPlugin):
    """Stops training an experience after ``iterations`` steps (the strategy's ``train_epochs`` must
    allow that many: ``iterations`` epochs always do, as an epoch has one step or more)."""

    def __init__(self, iterations: int):
        super().__init__()
        self.iterations = int(iterations)
        self.steps = 0

    def before_training_exp(self, strategy, **kwargs):
        self.steps = 0

    def after_training_iteration(self, strategy, **kwargs):
        self.steps += 1
        if self.steps >= self.iterations:
            strategy.stop_training()  # Avalanche ends the epoch loop before the next step


class SeenClassesLoss(torch.nn.Module):
    """Cross-entropy whose softmax covers only the classes marked seen, while ``self.training``;
    over every output otherwise (evaluation)."""

    def __init__(self, num_outputs: int):
        super().__init__()
        self.register_buffer("seen", torch.zeros(num_outputs, dtype=torch.bool))

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        if self.training:
            logits = logits.masked_fill(~self.seen.to(logits.device), float("-inf"))
        return F.cross_entropy(logits, targets)


class ActiveClasses(SupervisedPlugin):
    """Marks each training experience's classes seen in ``loss`` and switches it to evaluation mode
    while the strategy evaluates."""

    def __init__(self, loss: SeenClassesLoss):
        super().__init__()
        self.loss = loss

    def before_training_exp(self, strategy, **kwargs):
        self.loss.seen[torch.as_tensor(sorted(classes_of(strategy.experience)), dtype=torch.long)] = True
        self.loss.train()

    def before_eval(self, strategy, **kwargs):
        self.loss.eval()

    def after_eval(self, strategy, **kwargs):
        self.loss.train()
