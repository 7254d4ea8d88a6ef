"""Dark Experience Replay, DER and DER++ (Buzzega et al., NeurIPS 2020), as the authors' Mammoth runs them
(models/der.py, models/derpp.py, utils/buffer.py at d20f640).

At every training step, with ``(x', z')`` and ``(x'', y'')`` two independent batches of
``batch_size_mem`` rows drawn from a reservoir buffer (``z'``: the logits stored with ``x'``)::

    loss = CE(f(x), y) + alpha * MSE(f(x'), z') + beta * CE(f(x''), y'')      (DER: beta = 0)

and after the step the current batch goes into the reservoir: its un-augmented inputs, labels, task
labels and the logits of this step's forward pass (computed before the update: Mammoth's
``buffer.add_data(examples=not_aug_inputs, labels=labels, logits=outputs.data)``). Each replayed batch
is forwarded on its own, as in Mammoth (BatchNorm normalizes each batch by its own statistics), and
gets the run's training augmentation (``stream.augment``), as Mammoth's ``get_data(transform=...)``.

Why not Avalanche's ``DER``: it fills a class-balanced buffer at the end of each experience with the
end-of-experience model's logits (evaluation mode, un-augmented), replays nothing of the experience being
learnt, joins the replayed samples to the current batch in one forward pass and uses one replayed batch
for both DER++ terms. The paper's point is logits sampled along the optimization trajectory; with
Avalanche's DER the P-MNIST preset scored 44-60 where the paper has 82-88.

Logits are stored for the whole output layer, so the model needs a single head: class- and domain-IL
(Mammoth's Task-IL numbers are the class-IL run with other tasks' logits masked: ``task_masked_acc``).
"""
from __future__ import annotations

import torch
from avalanche.core import SupervisedPlugin
from avalanche.models import avalanche_forward
from avalanche.training.templates import SupervisedTemplate
from torch.nn import functional as F

from forgetbench.benchmarks.fastdata import augmented, unaugmented
from forgetbench.benchmarks.schema import NonNegative, Positive
from forgetbench.strategies.buffers import ReservoirBuffer
from forgetbench.strategies.registry import Memory, register_strategy


class DarkReplayPlugin(SupervisedPlugin):
    """Adds DER's replay terms to every training loss and fills the reservoir after every step."""

    def __init__(self, mem_size: int, batch_size_mem: int | None, alpha: float, beta: float, seed: int):
        super().__init__()
        self.buffer = ReservoirBuffer(mem_size, seed)
        self.generator = torch.Generator().manual_seed(seed)
        self.batch_size_mem, self.alpha, self.beta = batch_size_mem, alpha, beta

    def before_backward(self, strategy, **kwargs):
        if not len(self.buffer):
            return
        n = self.batch_size_mem or strategy.train_mb_size
        if self.alpha:
            x, _, t, logits = self.buffer.sample(n, self.generator)
            strategy.loss += self.alpha * F.mse_loss(self.forward(strategy, x, t), logits)
        if self.beta:
            x, y, t, _ = self.buffer.sample(n, self.generator)
            strategy.loss += self.beta * strategy._criterion(self.forward(strategy, x, t), y)

    @staticmethod
    def forward(strategy, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return avalanche_forward(strategy.model, augmented(strategy, x), t)

    def after_training_iteration(self, strategy, **kwargs):
        self.buffer.add(unaugmented(strategy), strategy.mb_y, strategy.mb_task_id, strategy.mb_output.detach())


@register_strategy("derpp", scenarios=("class", "domain"), memory=Memory(samples="mem_size", logits=True),
                   description="DER++: reservoir replay of stored logits (MSE) and labels (CE)")
class DarkExperienceReplayPlusPlus(SupervisedTemplate):
    """DER++. ``mem_size``: reservoir buffer of (input, label, task, logits); ``batch_size_mem``: rows per
    replayed batch (None: the training batch size); ``alpha``, ``beta``: weights of the logit MSE and the
    replayed-label cross-entropy.

    Defaults: Buzzega et al. 2020, best hyperparameters for Seq-MNIST with a 500-sample buffer (their
    appendix; Mammoth's utils/best_args.py, 'seq-mnist' / 'derpp' / 500): alpha = 1.0, beta = 0.5. The
    buffer is the middle one of the paper's 200/500/5120 (a judgement call).
    """

    def __init__(self, *, mem_size: Positive = 500, batch_size_mem: Positive | None = None,
                 alpha: NonNegative = 1.0, beta: NonNegative = 0.5, plugins=None, **kwargs):
        self.dark_replay = DarkReplayPlugin(mem_size, batch_size_mem, alpha, beta,
                                            seed=torch.initial_seed() % 2**31)
        super().__init__(plugins=[self.dark_replay, *(plugins or [])], **kwargs)


@register_strategy("der", scenarios=("class", "domain"), memory=Memory(samples="mem_size", logits=True),
                   description="Dark Experience Replay: reservoir replay of stored logits (MSE)")
class DarkExperienceReplay(DarkExperienceReplayPlusPlus):
    """DER: DER++ with ``beta = 0`` (no replayed-label term), so a record named ``der`` is always DER.
    Default ``alpha = 1.0``: Mammoth's best_args, 'seq-mnist' / 'der' / 500."""

    def __init__(self, *, mem_size: Positive = 500, batch_size_mem: Positive | None = None,
                 alpha: NonNegative = 1.0, plugins=None, **kwargs):
        super().__init__(mem_size=mem_size, batch_size_mem=batch_size_mem, alpha=alpha, beta=0.0,
                         plugins=plugins, **kwargs)
