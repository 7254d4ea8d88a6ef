"""Rehearsal against the previous model, as van de Ven & Tolias's code computes it (github.com/GMvandeVen/
continual-learning, branch ``preprints``: ``encoder.py Classifier.train_a_batch``, the replayed ``x_`` with
``scores_`` or ``y_``; ``utils.py loss_fn_kd``). Shared by ``sleep_dream`` (the inputs rehearsed are
dreams) and ``lwf_vdv`` (the current batch: their LwF, ``--replay=current --distill``).

For each task label seen before (one in class- and domain-IL), the classifier as it was at the end of
the previous experience (the teacher) scores the inputs on that task's previously seen classes; the
student is the live classifier over its active outputs (``active_classes=seen``: the classes seen so
far, the current experience's included; else every output). ``soft``: distillation, the teacher's
tempered softmax padded with zeros to the student's outputs (so the student is also taught that the
current experience's classes are absent from these inputs); ``hard``: cross-entropy with the teacher's
most probable previously seen class. The loss is the mean over the previous tasks.
"""
from __future__ import annotations

import copy

import torch
from avalanche.models import avalanche_forward
from torch import nn
from torch.nn import functional as F

from forgetbench.benchmarks.protocol import classes_of


def soft_targets(teacher_logits: torch.Tensor, classes: torch.Tensor, temperature: float) -> torch.Tensor:
    """The teacher's tempered softmax over ``classes`` (a bool mask over outputs), zero elsewhere."""
    return F.softmax(teacher_logits.masked_fill(~classes, float("-inf")) / temperature, dim=1)


def distillation_loss(student_logits: torch.Tensor, target_probs: torch.Tensor, temperature: float,
                      columns: torch.Tensor | None = None) -> torch.Tensor:
    """Their ``utils.loss_fn_kd``: ``T^2 * mean_batch sum_classes -p_target log softmax(student / T)``, the
    student's softmax over ``columns`` (a bool mask of its active outputs; None: all), where the targets lie.
    (Masks rather than column indexing: no host synchronisation on a GPU.)"""
    if columns is None:
        log_p = F.log_softmax(student_logits / temperature, dim=1)
    else:
        log_p = F.log_softmax(student_logits.masked_fill(~columns, float("-inf")) / temperature, dim=1)
        log_p = log_p.masked_fill(~columns, 0.0)  # inactive outputs: target 0, and no 0 * -inf
    return -(target_probs * log_p).sum(1).mean() * temperature ** 2


class PreviousModelTeacher:
    """The previous experience's classifier and the classes it had seen per task label; :meth:`loss` is
    the rehearsal loss of the live classifier on inputs ``x`` against it."""

    def __init__(self, replay_targets: str = "soft", temperature: float = 2.0):
        if replay_targets not in ("soft", "hard"):
            raise ValueError(f"unknown replay_targets {replay_targets!r}; choose soft or hard")
        self.replay_targets, self.temperature = replay_targets, float(temperature)
        self.previous_model: nn.Module | None = None  # the classifier at the end of the last experience
        self.previous_classes: dict[int, torch.Tensor] = {}  # task label -> bool mask of classes seen before
        self.current_classes: dict[int, list[int]] = {}

    def start(self, experience) -> None:
        """Note the classes of the experience about to be learnt."""
        task = int((getattr(experience, "task_labels", None) or [0])[0])
        self.current_classes = {task: sorted(classes_of(experience))}

    @staticmethod
    def student_outputs(strategy, num_outputs: int, device) -> torch.Tensor:
        """The classifier's active outputs: the harness's seen classes (``active_classes=seen``) or all."""
        seen = getattr(getattr(strategy, "_criterion", None), "seen", None)
        if seen is None:
            return torch.ones(num_outputs, dtype=torch.bool, device=device)
        return seen.to(device).clone()

    def loss(self, strategy, x: torch.Tensor) -> torch.Tensor:
        """Mean over the previous tasks (one in class- and domain-IL) of the loss of the classifier on ``x``
        against the previous classifier's soft targets (or hard labels) for that task's previously seen classes."""
        losses = []
        for task, classes in self.previous_classes.items():
            t = torch.full((len(x),), task, dtype=torch.long, device=x.device)
            with torch.no_grad():
                teacher = avalanche_forward(self.previous_model, x, t)
            student = avalanche_forward(strategy.model, x, t)
            classes = classes.to(x.device)
            columns = self.student_outputs(strategy, student.shape[1], x.device) | classes
            if self.replay_targets == "soft":
                targets = soft_targets(teacher, classes, self.temperature)
                losses.append(distillation_loss(student, targets, self.temperature, columns))
            else:
                labels = teacher.masked_fill(~classes, float("-inf")).argmax(1)
                losses.append(F.cross_entropy(student.masked_fill(~columns, float("-inf")), labels))
        return torch.stack(losses).mean()

    def hand_over(self, model: nn.Module, num_outputs: int) -> None:
        """At the end of an experience: a frozen copy of ``model`` becomes the teacher, and the experience's
        classes join the previously seen ones (``num_outputs``: outputs per head, the masks' size)."""
        self.previous_model = copy.deepcopy(model).eval().requires_grad_(False)
        device = next(model.parameters()).device
        for task, classes in self.current_classes.items():
            mask = self.previous_classes.get(task)
            mask = torch.zeros(num_outputs, dtype=torch.bool, device=device) if mask is None else mask.clone()
            mask[torch.as_tensor(classes, dtype=torch.long, device=mask.device)] = True
            self.previous_classes[task] = mask
