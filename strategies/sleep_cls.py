"""sleep_cls: complementary learning systems with wake and sleep phases.

Idea (CLS-ER: Arani, Sarfraz & Zonooz, "Learning Fast, Learning Slow: A General Continual Learning
Method based on Complementary Learning System", ICLR 2022). A fast "hippocampal" learner (the
working model) trains on the current experience while episodes go into a bounded reservoir buffer.
During sleep, buffered episodes are replayed: cross-entropy on them plus a consistency loss (MSE on
logits) toward whichever slow "neocortical" memory is more confident on the true label. The two
memories are exponential moving averages of the working model: a plastic one and a stable one,
each updated with its own rate and update probability after every sleep step. Inference uses the
stable memory (``eval_network``).

Deviations from CLS-ER:

- CLS-ER joins the replay batch to every wake batch in one gradient step and updates the memories
  every step; here replay and memory updates happen in sleep phases on their own schedule
  (``sleep_every`` wake iterations and/or after each experience, ``sleep_steps`` each). With
  ``sleep_every=1, sleep_steps=1`` this is CLS-ER with the replay batch as a separate SGD step.
- Memory horizons follow the experience length (``horizons_per_experience``, default 3). CLS-ER is
  task-free: fixed decays (0.99, i.e. a horizon of ~100 sleep steps for the plastic memory and
  ~111 for the stable one at update probability 0.9), tuned for experiences of ~1200 steps (S-MNIST,
  batch 10) or ~470 (P-MNIST, batch 128). On shorter experiences (Split-MNIST at batch 128: ~94
  steps) the stable memory then still holds much of the model from before the experience when it is
  evaluated (0.68 vs the working model's 0.97 on the newest experience). So at the start of each
  experience, if the slower memory's horizon is over 1/k of the experience's sleep steps, both
  memories' ``1 - decay`` are scaled by one factor until it fits (the plastic/stable ratio is kept):
  at the end of an experience the memories keep ~e^-k of the model from before it. At CLS-ER's own
  lengths the rates are unchanged. k = 3 was chosen on seeds 100-102 of Split-MNIST, common protocol
  (mean ACC, k = 2 / 3 / 4: class-IL 0.952 / 0.948 / 0.943, task-IL 0.992 / 0.993 / 0.993; replay
  0.911, 0.992). ``horizons_per_experience=None``: CLS-ER's fixed rates.
- The replay batch defaults to the wake batch, at least 32 (``sleep_batch_size=None``): CLS-ER's own
  choice at both ends of its MNIST settings (32 at wake batch 10 on S-MNIST, 128 at 128 on P-MNIST)
  and the batch replay joins to each wake batch by default.
"""
from __future__ import annotations

import copy
from typing import Literal

import torch
from avalanche.models import avalanche_forward
from avalanche.training.templates import SupervisedTemplate
from torch import nn
from torch.nn import functional as F

from forgetbench.benchmarks.fastdata import augmented, unaugmented
from forgetbench.benchmarks.schema import Fraction, NonNegative, Positive, PositiveFloat
from forgetbench.strategies.buffers import ReservoirBuffer
from forgetbench.strategies.registry import Memory, register_strategy
from forgetbench.strategies.sleep import SleepPlugin

NETWORKS = ("stable", "plastic", "working")
MIN_SLEEP_BATCH = 32  # CLS-ER's replay batch for S-MNIST (wake batch 10); 128 for P-/R-MNIST (wake batch 128)


@torch.no_grad()
def ema_update(memory: nn.Module, model: nn.Module, decay: float) -> None:
    """``memory <- decay * memory + (1 - decay) * model`` for every parameter; buffers (BatchNorm
    statistics) are copied, so a memory never normalizes with statistics of another network."""
    for m, p in zip(memory.parameters(), model.parameters()):
        m.mul_(decay).add_(p, alpha=1 - decay)
    for m, b in zip(memory.buffers(), model.buffers()):
        m.copy_(b)


class CLSSleep(SleepPlugin):
    """Wake: store episodes. Sleep: replay them and consolidate into the plastic and stable memories."""

    def __init__(self, model: nn.Module, mem_size: int, sleep_steps: int, sleep_batch_size: int | None,
                 consistency_weight: float, plastic_rate: float, plastic_update_prob: float,
                 stable_rate: float, stable_update_prob: float, sleep_lr: float | None,
                 every: int | None, after_experience: bool, seed: int, horizons_per_experience: float | None = None):
        super().__init__(every, after_experience)
        self.buffer = ReservoirBuffer(mem_size, seed)
        self.generator = torch.Generator().manual_seed(seed)
        self.memories = {"plastic": copy.deepcopy(model).eval(), "stable": copy.deepcopy(model).eval()}
        for memory in self.memories.values():
            memory.requires_grad_(False)
        self.base_rates = {"plastic": (plastic_rate, plastic_update_prob),
                           "stable": (stable_rate, stable_update_prob)}
        self.rates = dict(self.base_rates)  # this experience's (decay, update probability) per memory
        self.horizons_per_experience = horizons_per_experience
        self.sleep_steps, self.sleep_batch_size = int(sleep_steps), sleep_batch_size
        self.consistency_weight, self.sleep_lr = consistency_weight, sleep_lr
        self.consolidations = 0

    def to(self, device) -> None:
        for memory in self.memories.values():
            memory.to(device)

    def before_training_exp(self, strategy, **kwargs):
        super().before_training_exp(strategy, **kwargs)
        self.to(strategy.device)
        self.rates = self.experience_rates(sleep_steps_per_experience(strategy, self.every, self.at_experience_end,
                                                                      self.sleep_steps))

    def experience_rates(self, steps: int | None) -> dict[str, tuple[float, float]]:
        """Each memory's (decay, update probability) for an experience of ``steps`` sleep steps.

        A memory's horizon (EMA time constant) is ``1 / ((1 - decay) * prob)`` sleep steps. If the longest
        is over ``steps / horizons_per_experience``, every memory's ``1 - decay`` is multiplied by the
        same factor, so that the longest fits exactly and the plastic/stable ratio is kept; otherwise
        (long experiences, ``horizons_per_experience=None``, a loader without length) the configured
        rates hold. A memory that never moves (rate 1 or probability 0) is left out."""
        horizons = [1 / ((1 - rate) * prob) for rate, prob in self.base_rates.values() if (1 - rate) * prob > 0]
        if self.horizons_per_experience is None or not steps or not horizons:
            return dict(self.base_rates)
        speedup = max(1.0, max(horizons) * self.horizons_per_experience / steps)
        return {name: (max(0.0, 1 - speedup * (1 - rate)), prob) for name, (rate, prob) in self.base_rates.items()}

    def before_eval(self, strategy, **kwargs):
        self.to(strategy.device)

    def wake(self, strategy):
        self.buffer.add(unaugmented(strategy), strategy.mb_y, strategy.mb_task_id)  # CLS-ER's not_aug_inputs

    def sleep(self, strategy):
        if not len(self.buffer):
            return
        model, optimizer = strategy.model, strategy.optimizer
        model.train()
        wake_lrs = [group["lr"] for group in optimizer.param_groups]
        if self.sleep_lr is not None:
            for group in optimizer.param_groups:
                group["lr"] = self.sleep_lr
        batch_size = self.sleep_batch_size or max(MIN_SLEEP_BATCH, strategy.train_mb_size)
        for _ in range(self.sleep_steps):
            x, y, t = self.buffer.sample(batch_size, self.generator)
            x = augmented(strategy, x)  # a fresh crop and flip, as CLS-ER's buffer.get_data(transform=...)
            optimizer.zero_grad()
            logits = avalanche_forward(model, x, t)
            loss = F.cross_entropy(logits, y) + self.consistency_weight * F.mse_loss(logits, self.target(x, y, t))
            loss.backward()
            optimizer.step()
            self.consolidate(model)
        optimizer.zero_grad()
        for group, lr in zip(optimizer.param_groups, wake_lrs):
            group["lr"] = lr

    @torch.no_grad()
    def target(self, x, y, t) -> torch.Tensor:
        """Logits of the memory that gives the true label the higher probability, per sample."""
        stable = avalanche_forward(self.memories["stable"], x, t)
        plastic = avalanche_forward(self.memories["plastic"], x, t)
        stable_p = stable.softmax(1).gather(1, y[:, None])
        plastic_p = plastic.softmax(1).gather(1, y[:, None])
        return torch.where(stable_p > plastic_p, stable, plastic)

    def consolidate(self, model: nn.Module) -> None:
        """Each memory moves toward the working model with its probability; early steps average (warm-up)."""
        self.consolidations += 1
        for name, (rate, prob) in self.rates.items():
            if torch.rand(1, generator=self.generator).item() < prob:
                ema_update(self.memories[name], model, min(1 - 1 / (self.consolidations + 1), rate))


def sleep_steps_per_experience(strategy, every: int | None, after_experience: bool, sleep_steps: int) -> int | None:
    """Sleep steps the coming experience will take: its training steps (the loader's length x epochs, or
    the ``iterations`` budget if shorter) // ``every``, plus one sleep after it, ``sleep_steps`` each;
    None if the loader has no length."""
    from forgetbench.benchmarks.training import IterationBudget

    if not hasattr(strategy.dataloader, "__len__"):
        return None
    wake = len(strategy.dataloader) * strategy.train_epochs
    for plugin in strategy.plugins:
        if isinstance(plugin, IterationBudget):
            wake = min(wake, plugin.iterations)
    return ((wake // every if every else 0) + int(after_experience)) * sleep_steps


@register_strategy("sleep_cls", memory=Memory(samples="mem_size", networks=2),
                   description="CLS wake/sleep: reservoir replay into plastic + stable EMA memories")
class SleepCLS(SupervisedTemplate):
    """CLS-ER-style wake/sleep consolidation; evaluates the ``eval_network`` (stable, plastic or working).

    Defaults are CLS-ER's S-MNIST ones, except the buffer: 1000 like replay's, so a default grid
    compares equal memory (CLS-ER's 500: ``experiment=sleep_cls_mnist``), and the two rules the module
    docstring lists as deviations (horizons follow the experience length; replay batch >= wake batch).

    - ``mem_size``: reservoir buffer of episodes (x, y, task);
    - ``sleep_every``: sleep after every k wake iterations (None: never); ``sleep_after_experience``:
      also sleep at the end of each experience; ``sleep_steps``: replay steps per sleep;
      ``sleep_batch_size``: replayed episodes per sleep step (None: the wake batch size, at least 32);
      ``sleep_lr``: learning rate while asleep (None: the optimizer's);
    - ``consistency_weight``: weight of the MSE toward the more confident memory's logits;
    - ``plastic_rate``/``stable_rate``: EMA decay of each memory; ``*_update_prob``: probability that a
      sleep step updates it; ``horizons_per_experience``: k, the slower memory's horizon
      ``1 / ((1 - rate) * prob)`` is shortened (both rates by one factor) to at most 1/k of the
      experience's sleep steps (its training steps // ``sleep_every``, +1 if ``sleep_after_experience``,
      x ``sleep_steps``; training steps: loader length x epochs, or the ``iterations`` budget); None:
      the rates as given, whatever the experience length (CLS-ER's);
    - ``eval_network``: the network evaluated: stable | plastic | working.
    """

    def __init__(self, *, model, mem_size: Positive = 1000, sleep_every: Positive | None = 1,
                 sleep_after_experience: bool = False, sleep_steps: Positive = 1,
                 sleep_batch_size: Positive | None = None,
                 consistency_weight: NonNegative = 2.0, plastic_rate: Fraction = 0.99,
                 plastic_update_prob: Fraction = 1.0, stable_rate: Fraction = 0.99, stable_update_prob: Fraction = 0.9,
                 horizons_per_experience: PositiveFloat | None = 3.0, sleep_lr: NonNegative | None = None,
                 eval_network: Literal["stable", "plastic", "working"] = "stable", plugins=None, **kwargs):
        if eval_network not in NETWORKS:
            raise ValueError(f"unknown eval_network {eval_network!r}; choose one of {list(NETWORKS)}")
        self.eval_network = eval_network
        self.cls_sleep = CLSSleep(model, mem_size, sleep_steps, sleep_batch_size, consistency_weight,
                                  plastic_rate, plastic_update_prob, stable_rate, stable_update_prob, sleep_lr,
                                  sleep_every, sleep_after_experience, seed=torch.initial_seed() % 2**31,
                                  horizons_per_experience=horizons_per_experience)
        super().__init__(model=model, plugins=[self.cls_sleep, *(plugins or [])], **kwargs)

    def forward(self):
        if self.is_training or self.eval_network == "working":
            return super().forward()
        return avalanche_forward(self.cls_sleep.memories[self.eval_network], self.mb_x, self.mb_task_id)
