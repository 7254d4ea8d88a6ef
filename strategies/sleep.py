"""The wake/sleep schedule shared by the sleep strategies (``sleep_cls``, ``sleep_src``).

Wake is the strategy's ordinary training loop. :class:`SleepPlugin` calls ``wake(strategy)`` after
every training iteration and ``sleep(strategy)`` every ``every`` iterations and/or after each
experience; a sleep variant subclasses it and fills in those two hooks. The time spent asleep is
kept per experience (``sleep_seconds``) and logged, so its cost can be set against a wake epoch.
"""
from __future__ import annotations

import logging
import time

from avalanche.core import SupervisedPlugin

from forgetbench.benchmarks.protocol import synchronize

log = logging.getLogger(__name__)


class SleepPlugin(SupervisedPlugin):
    """Runs :meth:`sleep` every ``every`` wake iterations (None: never) and/or after each experience."""

    def __init__(self, every: int | None = None, after_experience: bool = True):
        super().__init__()
        if every is not None and int(every) < 1:
            raise ValueError(f"sleep every must be a positive number of iterations or null, got {every}")
        if every is None and not after_experience:
            raise ValueError("this schedule never sleeps: set a sleep period (every) or after_experience=true")
        self.every = None if every is None else int(every)
        self.at_experience_end = after_experience
        self.wake_steps = 0
        self.sleep_seconds: list[float] = []  # per experience

    def wake(self, strategy) -> None:
        """Called after every training iteration (before any sleep it triggers)."""

    def sleep(self, strategy) -> None:
        raise NotImplementedError

    def before_training_exp(self, strategy, **kwargs):
        self.sleep_seconds.append(0.0)

    def after_training_iteration(self, strategy, **kwargs):
        self.wake(strategy)
        self.wake_steps += 1
        if self.every is not None and self.wake_steps % self.every == 0:
            self._sleep(strategy)

    def after_training_exp(self, strategy, **kwargs):
        if self.at_experience_end:
            self._sleep(strategy)
        exp = strategy.experience.current_experience
        log.info("%s: experience %d slept %.2fs", type(self).__name__, exp, self.sleep_seconds[-1])

    def _sleep(self, strategy) -> None:
        was_training = strategy.model.training
        synchronize(strategy.device)
        start = time.perf_counter()
        self.sleep(strategy)
        synchronize(strategy.device)
        self.sleep_seconds[-1] += time.perf_counter() - start
        strategy.model.train(was_training)


def sleep_seconds(strategy) -> list[float] | None:
    """Seconds spent asleep per experience, summed over the strategy's sleep plugins; None if it never sleeps."""
    plugins = [p for p in getattr(strategy, "plugins", []) if isinstance(p, SleepPlugin)]
    return [sum(s) for s in zip(*(p.sleep_seconds for p in plugins))] if plugins else None
