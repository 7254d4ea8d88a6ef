"""forgetbench strategies: one module per method, each registering itself (registry.py).

The registry loads every module of this package, then the installed plugin packages
(plugins.py), the first time it is asked for a strategy.
"""
from forgetbench.strategies.registry import (
    Memory,
    PerStream,
    StrategyInfo,
    get_strategy,
    list_strategies,
    register_strategy,
    unregister_strategy,
)

__all__ = ["Memory", "PerStream", "StrategyInfo", "get_strategy", "list_strategies", "register_strategy", "unregister_strategy"]
