"""The strategy registry: names, supported scenarios and config files of every strategy.

A strategy is any Avalanche template class (often a plain template plus plugins). Register it
with :func:`register_strategy` and give it a config ``conf/strategy/<name>.yaml`` whose
``_target_`` builds it; the harness passes model, optimizer, criterion, batch sizes, epochs,
device, evaluator and plugins as keyword arguments.
"""
from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from pathlib import Path

from benchmarks.streams import SCENARIOS

CONF_DIR = Path(__file__).resolve().parent.parent / "conf" / "strategy"


@dataclass(frozen=True)
class StrategyInfo:
    name: str
    cls: type
    scenarios: tuple[str, ...]
    offline: bool  # trains once on the whole stream (joint training) instead of experience by experience
    description: str

    @property
    def config_file(self) -> Path:
        return CONF_DIR / f"{self.name}.yaml"


_REGISTRY: dict[str, StrategyInfo] = {}


def register_strategy(name: str, *, scenarios=SCENARIOS, offline: bool = False, description: str = ""):
    """Class decorator (or call on an existing class) adding a strategy under ``name``."""
    unknown = set(scenarios) - set(SCENARIOS)
    if unknown:
        raise ValueError(f"{name}: unknown scenarios {sorted(unknown)}; choose from {list(SCENARIOS)}")

    def add(cls: type) -> type:
        if name in _REGISTRY and _REGISTRY[name].cls is not cls:
            raise ValueError(f"strategy {name!r} is already registered to {_REGISTRY[name].cls}")
        doc = description or (cls.__doc__ or "").strip().split("\n")[0]
        _REGISTRY[name] = StrategyInfo(name, cls, tuple(scenarios), offline, doc)
        return cls

    return add


def list_strategies(pattern: str = "*") -> list[str]:
    """Registered names matching a shell-style wildcard, sorted."""
    return sorted(n for n in _REGISTRY if fnmatch.fnmatch(n, pattern))


def get_strategy(name: str) -> StrategyInfo:
    if name not in _REGISTRY:
        raise ValueError(f"unknown strategy {name!r}; choose one of {list_strategies()}")
    return _REGISTRY[name]


def check_scenario(name: str, scenario: str) -> StrategyInfo:
    info = get_strategy(name)
    if scenario not in info.scenarios:
        raise ValueError(
            f"strategy {name!r} does not support the {scenario!r} scenario; it supports {list(info.scenarios)}"
        )
    return info
