"""forgetbench strategies: importing the package registers every strategy module in it."""
import importlib
import pkgutil

from strategies.registry import check_scenario, get_strategy, list_strategies, register_strategy

for _module in pkgutil.iter_modules(__path__):
    if _module.name not in ("registry", "models"):
        importlib.import_module(f"{__name__}.{_module.name}")

__all__ = ["check_scenario", "get_strategy", "list_strategies", "register_strategy"]
