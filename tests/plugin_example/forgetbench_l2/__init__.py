"""L2: fine-tuning with an L2 penalty pulling the weights toward those the previous experience ended with
(the "L2" baseline of Kirkpatrick et al. 2017: EWC with every importance set to 1)."""
from typing import Optional

from forgetbench import Memory, SupervisedPlugin, SupervisedTemplate, register_strategy


class L2Penalty(SupervisedPlugin):
    """Adds ``strength * sum (theta - theta_prev)^2`` to the loss once an experience has been learned."""

    def __init__(self, strength: float):
        super().__init__()
        self.strength = strength
        self.previous = {}  # name -> parameters after the last experience: one model copy

    def before_backward(self, strategy, **kwargs):
        if self.previous:
            strategy.loss += self.strength * sum(((p - self.previous[name]) ** 2).sum()
                                                 for name, p in strategy.model.named_parameters())

    def after_training_exp(self, strategy, **kwargs):
        self.previous = {name: p.detach().clone() for name, p in strategy.model.named_parameters()}


@register_strategy("l2", memory=Memory(networks=1))
class L2(SupervisedTemplate):
    """L2 penalty toward the previous experience's weights"""

    def __init__(self, *, strength: float = 1.0, plugins: Optional[list] = None, **kwargs):
        super().__init__(plugins=[*(plugins or []), L2Penalty(strength)], **kwargs)
