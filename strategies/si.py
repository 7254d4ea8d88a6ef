"""Synaptic Intelligence (Zenke et al. 2017): Avalanche's plugin, with its CPU snapshot bug fixed.

SI adds c * sum_k Omega_k (theta_k - theta*_k)^2, where theta* are the parameters at the end of the
previous experience and Omega_k = sum over experiences of w_k / (Delta_k^2 + xi): w_k, the path
integral -sum_t g_k(t) dtheta_k(t) of each parameter's contribution to the drop in loss, and Delta_k
its change over the experience.

Avalanche 0.6's ``SynapticIntelligencePlugin.extract_weights`` stores
``param.detach().cpu().flatten()``. On a CUDA device that is a copy; on the CPU it is a *view* of the
live parameter, so the "old" weights move with the model: every per-step change dtheta is 0, every
importance is 0, the anchor theta* is the current weights, the penalty is 0, and a CPU run is
bit-identical to naive. :class:`SnapshotSIPlugin` makes the snapshots (the anchor at the start of an
experience, the weights before each step) copies, on every device.

One more difference from Avalanche's ``SynapticIntelligence``: Avalanche caps every importance at
0.001 (from Maltoni & Lomonaco's implementation, which its docstring cites), which Zenke et al. do not
have; in a short Split MNIST run (1000 samples per experience) the cap cut about 10% of the
importances, the largest by up to ~75x. ``max_importance=None`` (default) applies no cap; 0.001 is
Avalanche's. The penalty is Avalanche's ``(si_lambda / 2) * sum Omega (theta - theta*)^2``, so
``si_lambda = 2c``.
"""
from __future__ import annotations

import math
from typing import Optional

from avalanche.training.plugins import SynapticIntelligencePlugin
from avalanche.training.templates import SupervisedTemplate

from forgetbench.strategies.registry import Memory, register_strategy


class SnapshotSIPlugin(SynapticIntelligencePlugin):
    """Avalanche's SI plugin whose weight snapshots are copies, not views of the parameters (see the
    module docstring), with an optional cap on the importances (None: none, as in the paper)."""

    def __init__(self, si_lambda: float, eps: float, max_importance: Optional[float] = None):
        super().__init__(si_lambda=si_lambda, eps=eps)
        self.max_importance = max_importance

    @staticmethod
    def _own(params: dict) -> None:
        """Make each stored tensor a copy (a no-op in cost where it already is one, e.g. from CUDA)."""
        for data in params.values():
            data.data = data.data.clone()

    def before_training_exp(self, strategy, **kwargs):
        super().before_training_exp(strategy, **kwargs)  # stores the anchor theta* (a view on the CPU)
        self._own(self.ewc_data[0])

    def before_training_iteration(self, strategy, **kwargs):
        super().before_training_iteration(strategy, **kwargs)  # stores the weights before the step
        self._own(self.syn_data["old_theta"])

    def after_training_exp(self, strategy, **kwargs):
        # Avalanche's update with its cap made optional (it passes a fixed 0.001); c = 1 there is just a scale
        cap = math.inf if self.max_importance is None else self.max_importance
        self.update_ewc_data(strategy.model, self.ewc_data, self.syn_data, cap, self.excluded_parameters, 1,
                             eps=self.eps)


@register_strategy("si", memory=Memory(networks=2),  # the importances and the anchor theta*
                   description="Synaptic Intelligence: path-integral importances, quadratic penalty")
class SynapticIntelligence(SupervisedTemplate):
    """Synaptic Intelligence with :class:`SnapshotSIPlugin`.

    Defaults: van de Ven & Tolias 2019 ("Three scenarios for continual learning"), Split MNIST,
    class-IL (forgetbench's default scenario): c = 0.5, so ``si_lambda = 2c = 1.0``, and damping
    xi = ``eps`` = 0.1 (the values they selected; their code, GMvandeVen/continual-learning
    param_values.py as of Dec 2019). Zenke et al. have no class-IL value (their Split MNIST is
    multi-headed). van de Ven & Tolias select c per scenario: task-IL c = 50
    (``strategy.si_lambda=100``), domain-IL c = 500 (``strategy.si_lambda=1000``).
    ``max_importance``: cap on each importance (None: none, as in the paper; 0.001: Avalanche's).
    """

    def __init__(self, *, si_lambda: float = 1.0, eps: float = 0.1, max_importance: Optional[float] = None,
                 plugins: Optional[list] = None, **kwargs):
        plugin = SnapshotSIPlugin(si_lambda, eps, max_importance)
        super().__init__(plugins=[*(plugins or []), plugin], **kwargs)
