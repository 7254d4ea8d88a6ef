"""iCaRL (Rebuffi et al. 2017): Avalanche's implementation on forgetbench's models and streams.

Avalanche's ``ICaRL`` takes a feature extractor and a classifier (trained with iCaRL's sigmoid loss
and distillation; evaluation is nearest-mean-of-exemplars on the extractor's features). forgetbench's
single-head models are ``backbone`` + ``head``, so :class:`ICaRL` takes the harness's ``model`` and
passes those two. The iCaRL plugin reads the class order from ``experience.benchmark``
(``n_classes_per_exp``, ``classes_order``), which benchmarks built from datasets (forgetbench's) do
not have; :class:`_ClassOrder` gives the experience that view of its stream. Class-IL only: iCaRL
classifies among all classes seen, with global labels.
"""
from __future__ import annotations

from types import SimpleNamespace

from avalanche.core import SupervisedPlugin
from avalanche.training import ICaRL as AvalancheICaRL

from forgetbench.strategies.registry import Memory, register_strategy


class _ClassOrder(SupervisedPlugin):
    """Sets ``experience.benchmark`` to the class order of the experience's stream, where it has none."""

    def before_training_exp(self, strategy, **kwargs):
        experience = strategy.experience
        if getattr(experience, "benchmark", None) is None:
            classes = [sorted(e.classes_in_this_experience) for e in experience.origin_stream]
            experience.benchmark = SimpleNamespace(n_classes_per_exp=[len(c) for c in classes],
                                                   classes_order=[c for group in classes for c in group])


@register_strategy("icarl", scenarios=("class",),
                   memory=Memory(samples="memory_size", networks=1),  # exemplars + the previous model
                   description="iCaRL: herding exemplars, distillation, nearest-mean-of-exemplars classifier")
class ICaRL(AvalancheICaRL):
    """Avalanche's iCaRL on ``model.backbone`` (feature extractor) and ``model.head`` (classifier).

    ``memory_size``: the fixed exemplar budget K = 2000 of Rebuffi et al. 2017, Sec. 4 (also van de
    Ven & Tolias 2019's iCaRL budget on Split MNIST), shared among the classes seen (``fixed_memory``,
    as in the paper). iCaRL's own loss replaces the harness's ``criterion``.
    """

    def __init__(self, *, model, criterion=None, memory_size: int = 2000, plugins=None, **kwargs):
        if not (hasattr(model, "backbone") and hasattr(model, "head")):
            raise ValueError(f"icarl needs a model with a backbone and a head (forgetbench's single-head "
                             f"models); got {type(model).__name__}")
        super().__init__(feature_extractor=model.backbone, classifier=model.head, memory_size=memory_size,
                         buffer_transform=None, fixed_memory=True, plugins=[*(plugins or []), _ClassOrder()],
                         **kwargs)
