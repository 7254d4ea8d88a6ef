"""Avalanche's baselines, registered under forgetbench names.

- naive: fine-tuning on each experience in turn (the lower bound);
- joint: one model trained once on all experiences together (the upper bound);
- cumulative: at each experience, retrain on all data seen so far;
- ewc / online_ewc: Elastic Weight Consolidation (Kirkpatrick et al. 2017), separate penalties
  per experience or one decayed penalty (Schwarz et al. 2018); configs in conf/strategy/.
"""
from avalanche.training import EWC, Cumulative, JointTraining, Naive

from strategies.registry import register_strategy

register_strategy("naive", description="fine-tuning on each experience in turn (lower bound)")(Naive)
register_strategy("joint", offline=True, description="trained once on all experiences together (upper bound)")(
    JointTraining
)
register_strategy("cumulative", description="retrained on all data seen so far at each experience")(Cumulative)
register_strategy("ewc", description="Elastic Weight Consolidation, one penalty per experience")(EWC)
register_strategy("online_ewc", description="online EWC: one running, decayed penalty")(EWC)
