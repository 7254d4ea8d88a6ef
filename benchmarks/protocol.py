"""The protocol: evaluate the untrained model, then train experience by experience and after
each one evaluate on every test experience, filling the accuracy (and loss) matrix.

Training and evaluation are the strategy's own (Avalanche's) loops; this module only drives
them and reads the results through one plugin, :class:`MatrixRecorder`.

Task-masked accuracy ("task-IL from a class-IL run", as DER and CLS-ER report Task-IL: Mammoth's
``utils/training.py: mask_classes``): with ``MatrixRecorder(task_masked=True)`` every evaluation also
scores test experience j with only the outputs of experience j's classes competing (the argmax over
those), from the same forward pass as the accuracy, giving a second (T+1) x T matrix.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
import torch
from avalanche.core import SupervisedPlugin
from tqdm.auto import tqdm


class DivergenceError(FloatingPointError):
    """Training diverged: a non-finite training loss or parameter, or an evaluation loss that is
    non-finite or above :func:`loss_bound`. ``experience`` is the training experience it happened
    in (None: the untrained model), ``step`` the training step (1-based, counted over the run;
    None: no single step known), ``step_in_experience`` the same step counted within the experience."""

    def __init__(self, message: str, experience: int | None = None, step: int | None = None,
                 step_in_experience: int | None = None):
        super().__init__(message)
        self.experience, self.step, self.step_in_experience = experience, step, step_in_experience


LOSS_BOUND_FACTOR = 1e4


def loss_bound(num_outputs: int) -> float:
    """The largest mean evaluation loss (nats) a run that has not diverged can show:
    ``1e4 x ln(num_outputs)``, i.e. 1e4 times the loss of a uniform guess (2.3e4 for 10 classes).

    Why: cross-entropy is at least the gap between the largest logit and the true class's logit,
    and networks trained with cross-entropy at a working learning rate keep logits within tens
    (its gradient vanishes once a training sample's gap passes ~20-30 nats). Healthy runs, even
    class-incremental ones that are confidently wrong on old classes, score eval losses of O(10-100)
    (split MNIST, naive, 10 epochs: 46 with Adam lr=1e-3, 133 with lr=1e-2); diverged runs score
    1e6 (Adam lr=1) to 1e22 (Adam lr=1e6) while their accuracy sits at chance. The bound leaves two
    orders of magnitude of headroom above the first and is far below the second.
    Only evaluation losses are held to it: the training loss includes the strategy's own terms
    (EWC's lambda x penalty, distillation), whose scale is a hyperparameter, so training is
    checked for finiteness only (a training loss above the bound is reported as a hint)."""
    return LOSS_BOUND_FACTOR * math.log(max(int(num_outputs), 2))


def _lr_hint(strategy) -> str:
    try:
        return f"lower optimizer.lr (it is {strategy.optimizer.param_groups[0]['lr']:g}), e.g. 10x"
    except (AttributeError, IndexError, KeyError, TypeError, ValueError):
        return "lower optimizer.lr"


class StepLosses:
    """Every training step's loss, kept on the loss's device: ``add`` is one device copy into a
    preallocated slot, never a host sync; :meth:`scan` reads what matters once."""

    CHUNK = 1024

    def __init__(self):
        self._chunks: list[torch.Tensor] = []
        self.count = 0

    def add(self, loss: torch.Tensor) -> None:
        i = self.count % self.CHUNK
        if i == 0:
            dtype = loss.dtype if loss.is_floating_point() else torch.float32
            self._chunks.append(torch.empty(self.CHUNK, dtype=dtype, device=loss.device))
        loss = loss.detach()
        self._chunks[-1][i].copy_(loss if loss.dim() == 0 else loss.sum())
        self.count += 1

    def scan(self, bound: float, extra: torch.Tensor | None = None
             ) -> tuple[int | None, float, int | None, float, list]:
        """(index of the first non-finite loss or None, its value, index of the first loss above
        ``bound`` or None, its value, ``extra`` read as a list); one host sync in all."""
        if not self.count:
            return None, math.nan, None, math.nan, ([] if extra is None else extra.tolist())
        losses = torch.cat(self._chunks)[: self.count]
        index = torch.arange(self.count, device=losses.device)
        never = torch.full_like(index, self.count)
        first_bad = torch.where(~torch.isfinite(losses), index, never).min()
        first_big = torch.where(losses.abs() > bound, index, never).min()
        pick = lambda i: losses.index_select(0, i.clamp(max=self.count - 1).reshape(1)).double()  # noqa: E731
        values = [first_bad.double(), pick(first_bad), first_big.double(), pick(first_big)]
        if extra is not None:
            values.append(extra.to(losses.device, torch.float64))
        read = torch.cat([v.reshape(-1) for v in values]).tolist()  # the one sync
        bad, big = int(read[0]), int(read[2])
        return (None if bad == self.count else bad), read[1], (None if big == self.count else big), read[3], read[4:]


class MatrixRecorder(SupervisedPlugin):
    """Accuracy and mean loss per evaluated experience; a progress bar while training; divergence
    detection (:class:`DivergenceError`).

    Divergence: every training step's loss is copied into a device buffer (:class:`StepLosses`), so
    a step costs no host sync. At the end of each experience one read tells the first non-finite
    step and whether every parameter is finite (one sync per experience); either failing is
    divergence. Each evaluated experience's mean loss must be finite and within :func:`loss_bound`.
    """

    def __init__(self, num_experiences: int, progress: bool = True,
                 on_train_loss: Callable[[int, float], None] | None = None, loss_every: int = 50,
                 task_masked: bool = False, task_classes: Sequence[Sequence[int]] | None = None):
        super().__init__()
        self.num_experiences, self.progress = num_experiences, progress
        self.on_train_loss, self.loss_every = on_train_loss, loss_every
        self.results: dict[int, tuple[float, float]] = {}
        # task-masked accuracy (class-IL): experience -> accuracy with only its classes' outputs competing.
        # ``task_classes[j]``: the labels of experience j (run_protocol fills them in from the benchmark)
        self.task_masked = task_masked or task_classes is not None
        self.task_classes = None if task_classes is None else [sorted(int(c) for c in cs) for cs in task_classes]
        self.masked_results: dict[int, float] = {}
        self._masks: dict[tuple, torch.Tensor] = {}
        self._bar = None
        self._step = 0  # training steps so far, over the whole run
        self._exp_start = 0  # self._step when the current training experience began
        self._losses = StepLosses()  # the current experience's
        self._outputs = 2  # model outputs seen in training (sets the loss bound of the hint)
        self._trained: int | None = None  # the last training experience that finished
        self._hint = ""  # where the training loss first exceeded the bound, for an evaluation failure
        self._hint_step: tuple[int, int] | None = None

    # evaluation: sums stay on the device until the experience ends (no sync per batch)
    def before_eval_exp(self, strategy, **kwargs):
        self._correct = self._loss = self._masked_correct = 0.0
        self._count = 0
        self._eval_outputs = 2

    def after_eval_iteration(self, strategy, **kwargs):
        n, output = len(strategy.mb_y), strategy.mb_output
        self._correct = self._correct + (output.argmax(1) == strategy.mb_y).sum()
        self._loss = self._loss + strategy.loss.detach() * n
        self._count += n
        self._eval_outputs = output.shape[-1]
        if self.task_masked:  # the same outputs, only experience j's classes competing
            mask = self._mask(strategy.experience.current_experience, output)
            masked = output.detach().masked_fill(~mask, float("-inf")).argmax(1)
            self._masked_correct = self._masked_correct + (masked == strategy.mb_y).sum()

    def _mask(self, exp: int, output: torch.Tensor) -> torch.Tensor:
        """Boolean (outputs,) on the output's device: True for the classes of experience ``exp`` (cached)."""
        key = (exp, output.shape[-1], output.device)
        if key not in self._masks:
            if self.task_classes is None or exp >= len(self.task_classes):
                raise ValueError(f"task-masked accuracy: the classes of experience {exp} are not known; pass "
                                 "task_classes or evaluate through run_protocol")
            classes = torch.as_tensor(self.task_classes[exp], dtype=torch.long)
            if len(classes) and (classes.min() < 0 or classes.max() >= output.shape[-1]):
                raise ValueError(f"task-masked accuracy: experience {exp}'s classes {self.task_classes[exp]} are "
                                 f"not all among the model's {output.shape[-1]} outputs")
            mask = torch.zeros(output.shape[-1], dtype=torch.bool)
            mask[classes] = True
            self._masks[key] = mask.to(output.device)
        return self._masks[key]

    def after_eval_exp(self, strategy, **kwargs):
        exp = strategy.experience.current_experience
        count = max(self._count, 1)
        acc, loss = float(self._correct) / count, float(self._loss) / count
        bound = loss_bound(self._eval_outputs)
        if not (math.isfinite(loss) and loss <= bound):
            value = f"is {loss}" if not math.isfinite(loss) else f"is {loss:.3g}, above {bound:.3g} = 1e4 x ln(outputs)"
            if self._trained is None:
                raise DivergenceError(f"the untrained model's mean evaluation loss on experience {exp} {value}; "
                                      "check the model and its initialization")
            step, step_in = self._hint_step or (self._step, self._step - self._exp_start)
            raise DivergenceError(
                f"training diverged: after training experience {self._trained} (training step {self._step}) the "
                f"mean evaluation loss on experience {exp} {value}{self._hint}; {_lr_hint(strategy)}",
                experience=self._trained, step=step, step_in_experience=step_in)
        self.results[exp] = (acc, loss)
        if self.task_masked:
            self.masked_results[exp] = float(self._masked_correct) / count

    # training: progress, loss and divergence
    def before_training_exp(self, strategy, **kwargs):
        exp = strategy.experience.current_experience
        total = len(strategy.dataloader) * strategy.train_epochs if hasattr(strategy.dataloader, "__len__") else None
        self._bar = tqdm(total=total, desc=f"train exp {exp + 1}/{self.num_experiences}", unit="batch",
                         disable=not self.progress, leave=False, dynamic_ncols=True)
        self._exp_start, self._losses = self._step, StepLosses()
        self._hint, self._hint_step = "", None

    def after_training_iteration(self, strategy, **kwargs):
        self._step += 1
        loss = strategy.loss if isinstance(strategy.loss, torch.Tensor) else torch.tensor(float(strategy.loss))
        self._losses.add(loss)  # the divergence check: no sync here
        output = getattr(strategy, "mb_output", None)
        if isinstance(output, torch.Tensor) and output.dim():
            self._outputs = output.shape[-1]
        if self._bar is not None:
            self._bar.update(1)
        if self._step % self.loss_every == 0:  # one sync per loss_every steps, for the progress bar / W&B
            value = float(loss.detach())
            if not math.isfinite(value):  # stop now rather than at the end of the experience
                self._check_training(strategy)
            if self._bar is not None:
                self._bar.set_postfix(loss=f"{value:.3f}", refresh=False)
            if self.on_train_loss is not None:
                self.on_train_loss(self._step, value)

    def _check_training(self, strategy) -> None:
        """Read the experience's step losses and the parameters' finiteness (one sync); raise
        :class:`DivergenceError` on a non-finite loss or parameter."""
        exp = strategy.experience.current_experience
        parameters = [p.detach() for p in strategy.model.parameters()]
        finite = (torch.stack([torch.isfinite(p).all().to(parameters[0].device) for p in parameters]).all()
                  if parameters else None)
        bad, bad_loss, big, big_loss, extra = self._losses.scan(loss_bound(self._outputs), finite)
        if big is not None and bad is None:
            step = self._exp_start + big + 1
            self._hint_step = (step, big + 1)
            self._hint = (f"; the training loss first exceeded {loss_bound(self._outputs):.3g} at training step "
                          f"{step} (step {big + 1} of experience {exp}): {big_loss:.3g}")
        parameters_finite = bool(extra[0]) if extra else True
        if bad is None and parameters_finite:
            return
        self._close_bar()
        if bad is not None:
            step = self._exp_start + bad + 1
            before = (f" (it first exceeded {loss_bound(self._outputs):.3g} at step {big + 1}: {big_loss:.3g})"
                      if big is not None and big < bad else "")
            raise DivergenceError(
                f"training diverged in experience {exp} at training step {step} (step {bad + 1} of this "
                f"experience): the training loss is {bad_loss}{before}; {_lr_hint(strategy)}",
                experience=exp, step=step, step_in_experience=bad + 1)
        names = [n for n, p in strategy.model.named_parameters() if not torch.isfinite(p.detach()).all()]
        raise DivergenceError(
            f"training diverged in experience {exp}: after training step {self._step} (step "
            f"{self._step - self._exp_start} of this experience) the parameters {', '.join(names[:5])}"
            f"{' ...' if len(names) > 5 else ''} hold NaN or inf although every training loss was finite; "
            f"{_lr_hint(strategy)}", experience=exp, step=self._step, step_in_experience=self._step - self._exp_start)

    def _close_bar(self):
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def after_training_exp(self, strategy, **kwargs):
        self._close_bar()
        self._check_training(strategy)
        self._trained = strategy.experience.current_experience


@dataclass
class ProtocolResult:
    accuracy: np.ndarray  # (T+1) x T, NaN for rows not produced
    loss: np.ndarray
    train_seconds: list[float] = field(default_factory=list)  # per training call
    eval_seconds: list[float] = field(default_factory=list)  # per evaluated row
    task_masked_accuracy: np.ndarray | None = None  # (T+1) x T when the recorder is task_masked, else None


def synchronize(device: torch.device) -> None:
    """Wait for queued GPU work, so a wall-clock time covers it (no-op on CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def classes_of(experience) -> set[int]:
    """The labels in an experience's data (Avalanche's ``classes_in_this_experience`` where it has it)."""
    classes = getattr(experience, "classes_in_this_experience", None)
    if classes is None:
        classes = torch.unique(torch.as_tensor(list(experience.dataset.targets))).tolist()
    return {int(c) for c in classes}


def experience_classes(benchmark) -> list[list[int]]:
    """The labels of each experience: those of its training and its evaluation data together (so a class
    that a small ``max_test_per_exp`` leaves out of the test split still counts as the experience's)."""
    return [sorted(classes_of(train) | classes_of(test))
            for train, test in zip(benchmark.train_stream, benchmark.test_stream)]


def run_protocol(strategy, benchmark, recorder: MatrixRecorder, offline: bool = False,
                 on_row: Callable[[int, np.ndarray, np.ndarray], None] | None = None,
                 train_kwargs: dict | None = None) -> ProtocolResult:
    """Fill the accuracy matrix. ``offline`` strategies (joint) train once on the whole stream,
    so only rows 0 and T exist. ``on_row(i, acc_row, loss_row)`` is called as rows finish."""
    train_stream, test_stream = benchmark.train_stream, benchmark.test_stream
    T = len(train_stream)
    result = ProtocolResult(np.full((T + 1, T), np.nan), np.full((T + 1, T), np.nan))
    device = strategy.device
    if recorder.task_masked:
        result.task_masked_accuracy = np.full((T + 1, T), np.nan)
        if recorder.task_classes is None:
            recorder.task_classes = experience_classes(benchmark)

    def evaluate(row: int):
        recorder.results.clear()
        recorder.masked_results.clear()
        start = time.perf_counter()
        strategy.eval(test_stream)
        synchronize(device)
        result.eval_seconds.append(time.perf_counter() - start)
        for j, (acc, loss) in recorder.results.items():
            result.accuracy[row, j], result.loss[row, j] = acc, loss
        for j, acc in recorder.masked_results.items():
            result.task_masked_accuracy[row, j] = acc
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
