"""GDumb (Prabhu et al. 2020) and ER-ACE (Caccia et al. 2022), Avalanche's implementations.

Both keep a class-balanced buffer that Avalanche updates through the buffer's deprecated
``update``, whose decorator resets the warning filters and so prints a DeprecationWarning at every
experience whatever the caller filters. The subclasses only give them a buffer whose ``update`` is
its ``post_adapt`` (what the deprecated method does), as replay.py does for replay.
"""
from __future__ import annotations

from avalanche.training import ER_ACE, GDumb
from avalanche.training.plugins import GDumbPlugin
from avalanche.training.storage_policy import ClassBalancedBuffer

from forgetbench.strategies.registry import Memory, register_strategy


class _ClassBalancedBuffer(ClassBalancedBuffer):
    """Avalanche's class-balanced buffer, updated without the deprecation warning."""

    def update(self, strategy, **kwargs):
        self.post_adapt(strategy, strategy.experience)


@register_strategy("gdumb", memory=Memory(samples="mem_size", networks=1),  # + the initial model, to restart from
                   description="GDumb: a class-balanced buffer; the model is retrained from scratch on it")
class GreedyDumb(GDumb):
    """GDumb: greedily fill a class-balanced buffer, then train the initial model on the buffer alone.

    ``mem_size``: Prabhu et al. 2020, Split MNIST (5 tasks of 2 classes) with an MLP of width 400:
    k = 500 (their MNIST formulations; official code, scripts/replicate.sh: MNIST_MLP400_M500; they
    also run k = 300 and 4400).
    Their many epochs, SGD schedule and CutMix are the harness's to set (epochs, optimizer), not GDumb's.
    The buffer is balanced over labels, so in task- and domain-IL over the labels shared by experiences.
    """

    def __init__(self, *, mem_size: int = 500, plugins=None, **kwargs):
        super().__init__(mem_size=mem_size, plugins=plugins, **kwargs)
        for plugin in self.plugins:
            if isinstance(plugin, GDumbPlugin):
                plugin.storage_policy = _ClassBalancedBuffer(max_size=mem_size, adaptive_size=True)


@register_strategy("er_ace", memory=Memory(samples="mem_size"),
                   description="ER-ACE: replay; the incoming batch's loss masks the logits of classes not in it")
class ExperienceReplayACE(ER_ACE):
    """ER with the asymmetric cross-entropy of Caccia et al. 2022 (ICLR), Avalanche's batch version.

    ``batch_size_mem = 10``: the paper replays as many samples as arrive, 10 and 10 (its online setup;
    also Avalanche's default). ``mem_size = 200``: the paper's M = 20 samples per class (one of its
    buffer sizes, per class) times MNIST's 10 classes -- a judgement call, as the paper runs no MNIST;
    it is also Avalanche's default. In task- and domain-IL a batch's labels (local to each experience)
    are normally all the head's outputs, so the mask is void and ER-ACE acts as ER (the incoming and
    replayed losses averaged).
    """

    def __init__(self, *, mem_size: int = 200, batch_size_mem: int = 10, plugins=None, **kwargs):
        super().__init__(mem_size=mem_size, batch_size_mem=batch_size_mem, plugins=plugins, **kwargs)
        self.storage_policy = _ClassBalancedBuffer(max_size=mem_size, adaptive_size=True)
