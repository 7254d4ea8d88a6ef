"""lwf_vdv: Learning without Forgetting as van de Ven & Tolias ("Three scenarios for continual learning",
2019) run it: their ``--replay=current --distill`` (github.com/GMvandeVen/continual-learning, branch
``preprints``). Every step of experience t = 1, 2, ... the current batch is also "replayed" against the
classifier as it was at the end of experience t - 1:

    loss = (1/t) L_current + (1 - 1/t) T^2 KD(previous model -> classifier, on the current batch)

with distillation.py's loss, sleep_dream's (their DGR+distill) on real inputs instead of dreams.

How it differs from ``lwf`` (Avalanche's, Li & Hoiem's loss ``L_current + alpha KD``): in class-IL the
student's softmax in the distillation term covers every active output, the current experience's classes
included, and the teacher's distribution is padded with zeros there (their ``loss_fn_kd``), so the
term also pulls the current images' probability away from the new classes; Avalanche's softmaxes cover
the previously seen classes only, on both sides. The 1/t weighting is theirs too. In task- and domain-IL
the two losses are the same up to that weighting.
"""
from __future__ import annotations

from avalanche.core import SupervisedPlugin
from avalanche.training.templates import SupervisedTemplate

from forgetbench.benchmarks.schema import PositiveFloat
from forgetbench.strategies.distillation import PreviousModelTeacher
from forgetbench.strategies.registry import Memory, register_strategy


class CurrentBatchDistillation(SupervisedPlugin):
    """Weighs each step's loss ``1/t`` against the distillation of the current batch toward the previous model."""

    def __init__(self, temperature: float):
        super().__init__()
        self.teacher = PreviousModelTeacher("soft", temperature)
        self.experiences = 0  # t: experiences seen, the current one included
        self.num_outputs = 0

    def before_training_exp(self, strategy, **kwargs):
        self.experiences += 1
        self.teacher.start(strategy.experience)

    def before_backward(self, strategy, **kwargs):
        self.num_outputs = strategy.mb_output.shape[1]
        if self.teacher.previous_model is None:
            return
        rnt = 1.0 / self.experiences
        strategy.loss = rnt * strategy.loss + (1 - rnt) * self.teacher.loss(strategy, strategy.mb_x)

    def after_training_exp(self, strategy, **kwargs):
        self.teacher.hand_over(strategy.model, self.num_outputs)


@register_strategy("lwf_vdv", memory=Memory(networks=1),  # the previous model (the teacher)
                   description="LwF as van de Ven & Tolias run it: 1/t weighting, teacher padded over the new classes")
class LwFVanDeVen(SupervisedTemplate):
    """``temperature``: the distillation temperature T (2, theirs; the loss carries the T^2 factor)."""

    def __init__(self, *, temperature: PositiveFloat = 2.0, plugins=None, **kwargs):
        self.distill = CurrentBatchDistillation(temperature)
        super().__init__(plugins=[self.distill, *(plugins or [])], **kwargs)
