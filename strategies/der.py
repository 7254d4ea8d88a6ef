"""Dark Experience Replay (Buzzega et al., NeurIPS 2020): replay with the logits stored with each sample.

Avalanche's ``DER`` is DER++ (an extra cross-entropy term on the replayed labels, weight ``beta``);
DER is the same with ``beta = 0``. ``der`` fixes ``beta`` at 0, so a record named ``der`` is always
DER; DER++ is registered as ``derpp`` (standard.py). Avalanche's DER calls ``model(x)`` without task
labels when it stores logits, so it needs a single head: class- and domain-IL only.
"""
from __future__ import annotations

from avalanche.training import DER

from forgetbench.strategies.registry import Memory, register_strategy


@register_strategy("der", scenarios=("class", "domain"), memory=Memory(samples="mem_size", logits=True),
                   description="Dark Experience Replay: replay with stored logits (MSE)")
class DarkExperienceReplay(DER):
    """Avalanche's DER with ``beta = 0`` (no replayed-label term).

    Defaults: Buzzega et al. 2020, best hyperparameters for Seq-MNIST with a 500-sample buffer (their
    appendix; Mammoth's utils/best_args.py, 'seq-mnist' / 'der' / 500): ``alpha = 1.0``. The buffer
    size is the middle one of the paper's 200/500/5120 (a judgement call, the same as ``derpp``'s).
    ``batch_size_mem``: replayed samples per batch (None: the training batch size).
    """

    def __init__(self, *, mem_size: int = 500, batch_size_mem: int | None = None, alpha: float = 1.0,
                 plugins=None, **kwargs):
        super().__init__(mem_size=mem_size, batch_size_mem=batch_size_mem, alpha=alpha, beta=0.0,
                         plugins=plugins, **kwargs)
