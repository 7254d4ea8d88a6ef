"""Avalanche's baselines, registered under forgetbench names.

- naive: fine-tuning on each experience in turn (the lower bound);
- joint: one model trained once on all experiences together (the upper bound);
- cumulative: at each experience, retrain on all data seen so far.
EWC and online EWC are in ewc.py.
"""
from avalanche.training import Cumulative, JointTraining, Naive

from forgetbench.strategies.registry import Memory, register_strategy

register_strategy("naive", description="fine-tuning on each experience in turn (lower bound)")(Naive)
register_strategy("joint", offline=True, upper_bound=True, memory=Memory(samples="all"),
                  description="trained once on all experiences together (upper bound)")(JointTraining)
register_strategy("cumulative", upper_bound=True, memory=Memory(samples="all"),
                  description="retrained on all data seen so far at each experience (upper bound)")(Cumulative)
