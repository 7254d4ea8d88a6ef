"""forgetbench: a continual-learning benchmark suite that measures catastrophic forgetting.

The public API (everything else is internal and may change)::

    import forgetbench

    cfg = forgetbench.compose(["strategy=replay", "strategy.mem_size=500", "seed=1"])
    record = forgetbench.run(cfg)              # trains, evaluates, writes results/runs/python/...
    record["accuracy_matrix"], record["metrics"]["acc"]

    @forgetbench.register_strategy("my_method", scenarios=("class", "task"))
    class MyMethod(forgetbench.SupervisedTemplate): ...

- configs and runs: :func:`compose`, :func:`run`;
- strategies: :func:`register_strategy`, :class:`Memory`, :class:`Bounds` (a parameter's range, as
  ``Annotated[int, Bounds(min=1)]``), :class:`PerStream` (a default that depends on the stream and scenario), :func:`list_strategies`, :func:`get_strategy`,
  and the Avalanche bases a strategy builds on: :class:`SupervisedTemplate`, :class:`SupervisedPlugin`;
- metrics (pure functions of the accuracy matrix): :func:`summarize`, :func:`average_accuracy`, :func:`average_incremental_accuracy`, :func:`seen_accuracy`,
  :func:`backward_transfer`, :func:`forward_transfer`, :func:`average_forgetting`,
  :func:`forgetting_per_experience`, :func:`learning_accuracy`, :func:`intransigence`.

The installed package maps the repository's folders: ``forgetbench`` = ``scripts/`` (this API and
the command-line entry points), ``forgetbench.benchmarks``, ``forgetbench.strategies``, ``forgetbench.conf``.
Names are imported on first use, so ``import forgetbench`` stays cheap (no torch until needed).
"""
from __future__ import annotations

import importlib

_API = {
    "compose": "forgetbench.benchmarks.experiment",
    "run": "forgetbench.benchmarks.experiment",
    "register_strategy": "forgetbench.strategies.registry",
    "unregister_strategy": "forgetbench.strategies.registry",
    "list_strategies": "forgetbench.strategies.registry",
    "get_strategy": "forgetbench.strategies.registry",
    "Memory": "forgetbench.strategies.registry",
    "PerStream": "forgetbench.strategies.registry",
    "Bounds": "forgetbench.benchmarks.schema",
    "SupervisedTemplate": "avalanche.training.templates",
    "SupervisedPlugin": "avalanche.core",
    **{name: "forgetbench.benchmarks.metrics" for name in (
        "summarize", "average_accuracy", "average_incremental_accuracy", "seen_accuracy", "backward_transfer", "forward_transfer", "average_forgetting",
        "forgetting_per_experience", "learning_accuracy", "intransigence")},
}
__all__ = sorted(_API)


def __getattr__(name: str):
    if name not in _API:
        raise AttributeError(f"module 'forgetbench' has no attribute {name!r}")
    value = getattr(importlib.import_module(_API[name]), name)
    globals()[name] = value  # next time, a plain attribute
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
