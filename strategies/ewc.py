"""Elastic Weight Consolidation with one merged quadratic penalty.

EWC (Kirkpatrick et al. 2017) adds lambda * sum_k F_k (theta - theta_k)^2 for every past experience k
(diagonal Fisher F_k, parameters theta_k after experience k). Avalanche's ``EWCPlugin`` evaluates
that sum term by term at every step, so a step costs more with each experience. A sum of
quadratics in theta is one quadratic,

    sum_k F_k (theta - theta_k)^2 = A (theta - mu)^2 + c,   A = sum_k F_k,   mu = sum_k F_k theta_k / A,

so ``MergedEWCPlugin`` keeps (A, mu, c) per parameter and pays one term per step, whatever the
number of experiences: the same loss value and gradient, and O(1) memory instead of a copy of the
model per experience. Importances are Avalanche's own (``EWCPlugin.compute_importances``:
the mean over mini-batches of the squared gradient). Online EWC (Schwarz et al. 2018) is
Avalanche's rule: A <- decay * A + F, mu <- the latest parameters, c = 0.
"""
from __future__ import annotations

from typing import Optional

import torch
from avalanche.training.plugins import EWCPlugin
from avalanche.training.templates import SupervisedTemplate

from forgetbench.benchmarks.schema import Fraction, NonNegative
from forgetbench.strategies.registry import Memory, register_strategy


class MergedEWCPlugin(EWCPlugin):
    """Avalanche's EWC penalty and importances, with the per-experience penalties merged into one."""

    def __init__(self, ewc_lambda: float, mode: str = "separate", decay_factor: Optional[float] = None):
        super().__init__(ewc_lambda, mode, decay_factor)
        self.keep_importance_data = False  # nothing per experience is kept
        self.curvature: dict[str, torch.Tensor] = {}  # A
        self.anchor: dict[str, torch.Tensor] = {}  # mu
        self.offset = 0.0  # c, summed over parameters (float64 on the host: only the loss value uses it)

    def penalty(self, model: torch.nn.Module) -> torch.Tensor | float:
        """sum over parameters of A (theta - mu)^2 + c; parameters added after the last experience do not count."""
        total = self.offset
        for name, p in model.named_parameters():
            if name in self.curvature:
                a, mu = self._state(name, p.shape)
                total = total + (a * (p - mu).pow(2)).sum()
        return total

    def _state(self, name: str, shape: torch.Size) -> tuple[torch.Tensor, torch.Tensor]:
        """(A, mu) of a parameter, zero-padded if it grew (e.g. a classifier with new units: A = 0 there)."""
        a = self.curvature[name]
        if a.shape != shape:
            self.curvature[name], self.anchor[name] = _grow(a, shape), _grow(self.anchor[name], shape)
        return self.curvature[name], self.anchor[name]

    def before_backward(self, strategy, **kwargs):
        if self.curvature:
            strategy.loss += self.ewc_lambda * self.penalty(strategy.model)

    def after_training_exp(self, strategy, **kwargs):
        fisher = self.compute_importances(strategy.model, strategy._criterion, strategy.optimizer,
                                          strategy.experience.dataset, strategy.device, strategy.train_mb_size,
                                          num_workers=kwargs.get("num_workers", 0))
        self.consolidate(strategy.model, {name: imp.data for name, imp in fisher.items()})

    @torch.no_grad()
    def consolidate(self, model: torch.nn.Module, fisher: dict[str, torch.Tensor]) -> None:
        """Add the current parameters with their Fisher information to the penalty."""
        for name, p in model.named_parameters():
            f, theta = fisher[name], p.detach()
            if name not in self.curvature:
                self.curvature[name], self.anchor[name] = f.clone(), theta.clone()
                continue
            a, mu = self._state(name, p.shape)
            if self.mode == "online":
                a_new, mu_new = self.decay_factor * a + f, theta.clone()
            else:  # merge A (theta - mu)^2 + F (theta - theta_t)^2 into A' (theta - mu')^2 + dc
                a_new = a + f
                safe = torch.where(a_new > 0, a_new, torch.ones_like(a_new))
                mu_new = torch.where(a_new > 0, (a * mu + f * theta) / safe, theta)
                self.offset += float((a * f / safe * (mu - theta).pow(2)).double().sum())
            self.curvature[name], self.anchor[name] = a_new, mu_new


def _grow(t: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    out = t.new_zeros(shape)
    out[tuple(slice(0, n) for n in t.shape)] = t
    return out


@register_strategy("ewc", memory=Memory(networks=2),
                   description="Elastic Weight Consolidation: a Fisher penalty per experience, merged into one")
class EWC(SupervisedTemplate):
    """EWC (Kirkpatrick et al. 2017) with :class:`MergedEWCPlugin`; keeps a Fisher and an anchor per parameter."""

    def __init__(self, *, ewc_lambda: NonNegative = 1000.0, plugins: Optional[list] = None, **kwargs):
        super().__init__(plugins=[*(plugins or []), MergedEWCPlugin(ewc_lambda, "separate")], **kwargs)


@register_strategy("online_ewc", memory=Memory(networks=2),
                   description="online EWC: one running, decayed Fisher penalty")
class OnlineEWC(SupervisedTemplate):
    """Online EWC (Schwarz et al. 2018): the Fisher decays by ``decay_factor`` at each experience."""

    def __init__(self, *, ewc_lambda: NonNegative = 1000.0, decay_factor: Fraction = 0.9, plugins: Optional[list] = None,
                 **kwargs):
        super().__init__(plugins=[*(plugins or []), MergedEWCPlugin(ewc_lambda, "online", decay_factor)], **kwargs)
