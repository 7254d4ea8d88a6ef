"""Experience replay (Chaudhry et al. 2019, "On tiny episodic memories in continual learning").

Each training batch of the current experience is joined by an equal-sized batch drawn from a
bounded buffer of past samples. The buffer policy is Avalanche's: ``experience_balanced``
(equal share per experience, Avalanche's default), ``class_balanced`` (equal share per class)
or ``reservoir`` (a uniform sample of everything seen).
"""
from typing import Literal

from avalanche.training.plugins import ReplayPlugin
from avalanche.training.storage_policy import (
    ClassBalancedBuffer,
    ExperienceBalancedBuffer,
    ReservoirSamplingBuffer,
)
from avalanche.training.templates import SupervisedTemplate

from forgetbench.strategies.registry import Memory, register_strategy

BUFFERS = {
    "experience_balanced": ExperienceBalancedBuffer,
    "class_balanced": ClassBalancedBuffer,
    "reservoir": ReservoirSamplingBuffer,
}


class _ReplayPlugin(ReplayPlugin):
    """Avalanche's ReplayPlugin, updating the buffer through ``post_adapt`` (what its deprecated
    ``update`` does, without the deprecation warning at every experience)."""

    def after_training_exp(self, strategy, **kwargs):
        self.storage_policy.post_adapt(strategy, strategy.experience)


@register_strategy("replay", memory=Memory(samples="mem_size"))
class Replay(SupervisedTemplate):
    """Experience replay with a bounded buffer (experience-balanced, class-balanced or reservoir).

    ``mem_size``: samples kept; ``buffer``: experience_balanced | class_balanced | reservoir;
    ``batch_size_mem``: replayed samples per batch (None: the training batch size).
    """

    def __init__(self, *, mem_size: int = 1000,
                 buffer: Literal["experience_balanced", "class_balanced", "reservoir"] = "experience_balanced",
                 batch_size_mem: int | None = None, plugins=None, **kwargs):
        if buffer not in BUFFERS:
            raise ValueError(f"unknown replay buffer {buffer!r}; choose one of {sorted(BUFFERS)}")
        policy = BUFFERS[buffer](max_size=mem_size)
        replay = _ReplayPlugin(mem_size=mem_size, batch_size_mem=batch_size_mem, storage_policy=policy)
        super().__init__(plugins=[replay, *(plugins or [])], **kwargs)
