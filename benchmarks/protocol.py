"""The protocol: evaluate the untrained model, then train experience by experience and after
each one evaluate on every test experience, filling the accuracy (and loss) matrix.

Training and evaluation are the strategy's own (Avalanche's) loops; this module only drives
them and reads the results through one plugin, :class:`MatrixRecorder`.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
from avalanche.core import SupervisedPlugin
from tqdm.auto import tqdm


class MatrixRecorder(SupervisedPlugin):
    """Accuracy and mean loss per evaluated experience; a progress bar while training."""

    def __init__(self, num_experiences: int, progress: bool = True,
                 on_train_loss: Callable[[int, float], None] | None = None, loss_every: int = 50):
        super().__init__()
        self.num_experiences, self.progress = num_experiences, progress
        self.on_train_loss, self.loss_every = on_train_loss, loss_every
        self.results: dict[int, tuple[float, float]] = {}
        self._bar = None
        self._step = 0

    # evaluation: sums stay on the device until the experience ends (no sync per batch)
    def before_eval_exp(self, strategy, **kwargs):
        self._correct = self._loss = 0.0
        self._count = 0

    def after_eval_iteration(self, strategy, **kwargs):
        n = len(strategy.mb_y)
        self._correct = self._correct + (strategy.mb_output.argmax(1) == strategy.mb_y).sum()
        self._loss = self._loss + strategy.loss.detach() * n
        self._count += n

    def after_eval_exp(self, strategy, **kwargs):
        exp = strategy.experience.current_experience
        count = max(self._count, 1)
        self.results[exp] = (float(self._correct) / count, float(self._loss) / count)

    # training: progress and loss
    def before_training_exp(self, strategy, **kwargs):
        exp = strategy.experience.current_experience
        total = len(strategy.dataloader) * strategy.train_epochs if hasattr(strategy.dataloader, "__len__") else None
        self._bar = tqdm(total=total, desc=f"train exp {exp + 1}/{self.num_experiences}", unit="batch",
                         disable=not self.progress, leave=False, dynamic_ncols=True)

    def after_training_iteration(self, strategy, **kwargs):
        self._step += 1
        if self._bar is not None:
            self._bar.update(1)
        if self._step % self.loss_every == 0:
            loss = float(strategy.loss.detach())
            if not math.isfinite(loss):
                raise FloatingPointError(f"training loss is {loss} at step {self._step}; lower the learning rate?")
            if self._bar is not None:
                self._bar.set_postfix(loss=f"{loss:.3f}", refresh=False)
            if self.on_train_loss is not None:
                self.on_train_loss(self._step, loss)

    def after_training_exp(self, strategy, **kwargs):
        if self._bar is not None:
            self._bar.close()
            self._bar = None


@dataclass
class ProtocolResult:
    accuracy: np.ndarray  # (T+1) x T, NaN for rows not produced
    loss: np.ndarray
    train_seconds: list[float] = field(default_factory=list)  # per training call
    eval_seconds: list[float] = field(default_factory=list)  # per evaluated row


def synchronize(device: torch.device) -> None:
    """Wait for queued GPU work, so a wall-clock time covers it (no-op on CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run_protocol(strategy, benchmark, recorder: MatrixRecorder, offline: bool = False,
                 on_row: Callable[[int, np.ndarray, np.ndarray], None] | None = None,
                 train_kwargs: dict | None = None) -> ProtocolResult:
    """Fill the accuracy matrix. ``offline`` strategies (joint) train once on the whole stream,
    so only rows 0 and T exist. ``on_row(i, acc_row, loss_row)`` is called as rows finish."""
    train_stream, test_stream = benchmark.train_stream, benchmark.test_stream
    T = len(train_stream)
    result = ProtocolResult(np.full((T + 1, T), np.nan), np.full((T + 1, T), np.nan))
    device = strategy.device

    def evaluate(row: int):
        recorder.results.clear()
        start = time.perf_counter()
        strategy.eval(test_stream)
        synchronize(device)
        result.eval_seconds.append(time.perf_counter() - start)
        for j, (acc, loss) in recorder.results.items():
            result.accuracy[row, j], result.loss[row, j] = acc, loss
        if on_row is not None:
            on_row(row, result.accuracy[row], result.loss[row])

    def train(experiences):
        start = time.perf_counter()
        strategy.train(experiences, eval_streams=[], **(train_kwargs or {}))
        synchronize(device)
        result.train_seconds.append(time.perf_counter() - start)

    evaluate(0)
    if offline:
        train(train_stream)
        evaluate(T)
    else:
        for i, experience in enumerate(train_stream):
            train(experience)
            evaluate(i + 1)
    return result
