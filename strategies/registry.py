"""The strategy registry: each strategy is defined once, as a class registered with its name,
capabilities and defaults.

    @register_strategy("replay", memory=Memory(samples="mem_size"))
    class Replay(SupervisedTemplate):
        def __init__(self, *, mem_size: int = 1000, plugins=None, **kwargs): ...

The keyword parameters of ``__init__``, except the ones the harness passes (model, optimizer,
criterion, batch sizes, epochs, device, evaluator, plugins: :data:`HARNESS_ARGS`), are the
strategy's config. Registering stores them with their defaults as the Hydra option
``strategy=<name>`` (``{name: <name>, **parameters}``), so ``strategy.mem_size=500`` overrides one
and ``forgetbench --cfg job`` shows them all; no YAML file repeats them. :meth:`StrategyInfo.params`
checks a config against the signature, so a record's strategy name is always the class that ran.
A default that depends on the stream and scenario is a :class:`PerStream` table given in
``register_strategy(..., defaults=...)`` (EWC's lambda).

``strategy=avalanche strategy.cls=LwF strategy.alpha=1 ...`` runs any other
``avalanche.training`` strategy, recorded as ``avalanche.LwF``.
"""
from __future__ import annotations

import difflib
import fnmatch
import importlib
import inspect
import pkgutil
from dataclasses import dataclass, field
from typing import Callable

from omegaconf import OmegaConf

from forgetbench.benchmarks.streams import SCENARIOS

GENERIC = "avalanche"  # strategy=avalanche strategy.cls=<class in avalanche.training>


def _template_args() -> frozenset[str]:
    from avalanche.training.templates import SupervisedTemplate

    return frozenset(inspect.signature(SupervisedTemplate.__init__).parameters) - {"self"}


@dataclass(frozen=True)
class Memory:
    """What a strategy keeps besides the model between experiences: the leaderboard's memory column.

    ``samples``: the parameter bounding the stored training samples (e.g. ``"mem_size"``), ``"all"``
    for every training sample seen (joint, cumulative), or None; ``per_experience``: that bound is
    per experience (A-GEM's ``patterns_per_exp``); ``logits``: each stored sample keeps the model's
    outputs too (DER); ``networks``: model-sized parameter sets kept (EWC's Fisher and anchor: 2,
    LwF's previous model: 1, memory networks, a generator of the model's size).
    """

    samples: str | None = None
    per_experience: bool = False
    logits: bool = False
    networks: float = 0.0
    # other parameter sets kept, not model-sized (a generator and its copy): f(params, input_numel) -> count
    parameters: Callable[[dict, int], int] | None = None
    parameters_are: str = "other networks (e.g. a generator), counted exactly"  # what ``parameters`` counts

    def describe(self, params: dict | None = None) -> str:
        """E.g. ``"1000 samples (mem_size) + logits, 2 model copies"``; ``params`` gives the bound's value."""
        parts = []
        if self.samples == "all":
            parts.append("all samples seen")
        elif self.samples:
            bound = f"{params[self.samples]} samples ({self.samples})" if params else f"{self.samples} samples"
            parts.append(bound + (" per experience" if self.per_experience else "") + (" + logits" if self.logits else ""))
        if self.networks:
            parts.append(f"{self.networks:g} model cop{'y' if self.networks == 1 else 'ies'}")
        if self.parameters:
            parts.append(self.parameters_are)
        return ", ".join(parts) or "none"

    def usage(self, params: dict, *, train_samples: list[int], input_numel: int, num_outputs: int,
              model_parameters: int) -> dict:
        """Samples and bytes kept at the end of a stream: inputs at 1 byte per value (the 8-bit
        datasets' native size), an int64 label per sample, float32 logits and parameters."""
        if self.samples == "all":
            samples = sum(train_samples)
        elif self.samples:
            bound = int(params[self.samples])
            samples = sum(min(bound, n) for n in train_samples) if self.per_experience else min(bound, sum(train_samples))
        else:
            samples = 0
        per_sample = input_numel + 8 + (4 * num_outputs if self.logits else 0)
        parameters = self.networks * model_parameters + (self.parameters(params, input_numel) if self.parameters else 0)
        return {"samples": samples, "bytes": samples * per_sample + int(parameters * 4), "stores": self.describe(params)}


@dataclass(frozen=True)
class StrategyInfo:
    """A registered strategy: its class, config defaults and declared capabilities."""

    name: str
    cls: type
    defaults: dict  # parameter -> default (or a PerStream table): the strategy's whole config
    scenarios: tuple[str, ...]
    offline: bool  # trains once on the whole stream (joint training), not experience by experience
    upper_bound: bool  # a reference, not a contender (joint, cumulative): never ranked best
    task_labels: bool  # needs task labels at test time
    memory: Memory | None  # None: not declared (generic Avalanche entry)
    description: str
    source: str = "built-in"  # or the plugin's distribution, e.g. "forgetbench-l2 0.1.0"
    open_params: bool = field(default=False, repr=False)  # any keyword the class accepts (generic entry)

    def params(self, node: dict) -> dict:
        """The keyword arguments a config node gives the class; an unknown key is an error naming the nearest."""
        params = {k: v for k, v in node.items() if k not in ("name", "cls")}
        allowed = self.defaults if not self.open_params else _signature_params(self.cls)
        for key in params:
            if key not in allowed:
                close = difflib.get_close_matches(key, list(allowed), n=1)
                hint = f"did you mean strategy.{close[0]}? " if close else ""
                if key == "_target_":
                    hint = f"to run another Avalanche strategy: strategy={GENERIC} strategy.cls=<Class>; "
                raise ValueError(f"strategy {self.name!r} has no parameter {key!r}; {hint}"
                                 f"its parameters: {', '.join(allowed) or 'none'}")
        return params

    def config_problems(self, config: dict) -> list[str]:
        """What the class's optional ``config_problems(config) -> list[str]`` (a staticmethod or
        classmethod given the run's resolved config) says against this run: a combination the
        strategy is known to be wrong for, each message naming the fix. The run is refused before any
        data is loaded."""
        check = getattr(self.cls, "config_problems", None)
        return [f"strategy={self.name}: {message}" for message in check(config)] if check else []

    def check_scenario(self, scenario: str) -> None:
        if scenario not in self.scenarios:
            raise ValueError(f"strategy {self.name!r} does not support the {scenario!r} scenario; "
                             f"it supports {list(self.scenarios)} (choose scenario={'|'.join(self.scenarios)}, "
                             f"or a strategy listed by `forgetbench-strategies` for {scenario})")


_REGISTRY: dict[str, StrategyInfo] = {}
_source: str | None = None  # set while a plugin package loads


def _signature_params(cls: type) -> dict:
    """Keyword parameters of ``cls.__init__`` that are not the harness's or the template's: name -> default."""
    skip = _template_args()
    out = {}
    for p in inspect.signature(cls.__init__).parameters.values():
        if p.name != "self" and p.name not in skip and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL):
            out[p.name] = p.default
    return out


@dataclass(frozen=True)
class PerStream:
    """A parameter default that depends on the run's stream and scenario, for a knob whose useful
    value does (EWC's lambda: Permuted-MNIST needs a far weaker penalty than Split-MNIST).

    ``values`` maps ``"<stream>/<scenario>"`` patterns (shell wildcards, e.g. ``"permuted_mnist/*"``;
    the first match wins) to a value, ``default`` covers every other run (say where the values come
    from beside the table). The ``strategy=<name>`` option holds ``${strategy_default:<name>,<param>}``,
    which resolves against the run's ``stream.name`` and ``scenario`` (records keep the number); an
    override such as ``strategy.ewc_lambda=10`` replaces it."""

    default: object
    values: dict

    def value(self, stream: str, scenario: str):
        run = f"{stream}/{scenario}"
        return next((v for pattern, v in self.values.items() if fnmatch.fnmatchcase(run, pattern)), self.default)

    def __repr__(self) -> str:
        return f"{self.default!r} ({', '.join(f'{p}: {v!r}' for p, v in self.values.items())})"


def _strategy_default(strategy: str, param: str, *, _root_):
    """Resolver ``${strategy_default:<strategy>,<param>}``: the :class:`PerStream` default for this run."""
    return _REGISTRY[strategy].defaults[param].value(_root_.stream.name, _root_.scenario)


OmegaConf.register_new_resolver("strategy_default", _strategy_default, replace=True)


def _config_value(name: str, key: str, value):
    if value is inspect.Parameter.empty:
        raise ValueError(f"strategy {name!r}: parameter {key!r} has no default; give one in its signature "
                         f"or register_strategy(..., defaults={{{key!r}: ...}})")
    return list(value) if isinstance(value, tuple) else value


def option_node(info: "StrategyInfo") -> dict:
    """The ``strategy=<name>`` Hydra option: the name and the defaults, a :class:`PerStream` one as its resolver."""
    return {"name": info.name, **{k: f"${{strategy_default:{info.name},{k}}}" if isinstance(v, PerStream) else v
                                  for k, v in info.defaults.items()}}


def register_strategy(name: str, *, scenarios=SCENARIOS, offline: bool = False, upper_bound: bool = False,
                      task_labels: bool = False, memory: Memory = Memory(), defaults: dict | None = None,
                      description: str = ""):
    """Class decorator (or call on an existing class) registering a strategy under ``name``.

    ``scenarios``: those it supports; ``offline``: trains once on all experiences (joint);
    ``upper_bound``: a reference, never ranked best; ``task_labels``: needs task labels at test time
    (so task-IL only); ``memory``: what it stores (:class:`Memory`); ``defaults``: parameter
    defaults that the signature lacks or that the paper sets differently (e.g. for an Avalanche class),
    or that depend on the stream and scenario (a :class:`PerStream` table).
    """
    unknown = set(scenarios) - set(SCENARIOS)
    if unknown:
        raise ValueError(f"{name}: unknown scenarios {sorted(unknown)}; choose from {list(SCENARIOS)}")
    if task_labels and set(scenarios) != {"task"}:
        raise ValueError(f"{name}: a strategy that needs task labels at test time supports only scenarios=('task',)")
    if not name.isidentifier() or name == GENERIC:
        raise ValueError(f"strategy name {name!r} must be an identifier other than {GENERIC!r}")

    def add(cls: type) -> type:
        if name in _REGISTRY and _REGISTRY[name].cls is not cls:
            raise ValueError(f"strategy {name!r} is already registered to {_REGISTRY[name].cls.__module__}."
                             f"{_REGISTRY[name].cls.__qualname__} ({_REGISTRY[name].source})")
        signature = _signature_params(cls)
        extra = set(defaults or {}) - set(signature)
        if extra:
            raise ValueError(f"strategy {name!r}: defaults for {sorted(extra)}, which {cls.__qualname__} does not "
                             f"accept; its parameters: {list(signature)}")
        params = {k: _config_value(name, k, v) for k, v in {**signature, **(defaults or {})}.items()}
        doc = description or (cls.__doc__ or "").strip().split("\n")[0]
        source = _source or ("built-in" if cls.__module__.startswith(("forgetbench.", "avalanche.")) else cls.__module__)
        _REGISTRY[name] = StrategyInfo(name, cls, params, tuple(scenarios), offline, upper_bound, task_labels,
                                       memory, doc, source)
        _store_config(name, option_node(_REGISTRY[name]))
        return cls

    return add


def unregister_strategy(name: str) -> None:
    """Remove a strategy (and its Hydra option): for tests and interactive sessions."""
    from hydra.core.config_store import ConfigStore

    _REGISTRY.pop(name, None)
    ConfigStore.instance().repo.get("strategy", {}).pop(f"{name}.yaml", None)


def _store_config(name: str, node) -> None:
    from hydra.core.config_store import ConfigStore

    ConfigStore.instance().store(group="strategy", name=name, node=node, provider="forgetbench")


def _store_generic() -> None:
    from omegaconf import OmegaConf

    node = OmegaConf.create({"name": f"{GENERIC}.${{.cls}}", "cls": "???"})
    OmegaConf.set_struct(node, False)  # any keyword of the chosen class; checked by StrategyInfo.params
    _store_config(GENERIC, node)


_loaded = False


def load_all() -> None:
    """Register the built-in strategies, then those of installed plugin packages (once)."""
    global _loaded
    if _loaded:
        return
    _loaded = True
    import forgetbench.strategies as package

    for module in pkgutil.iter_modules(package.__path__):
        importlib.import_module(f"{package.__name__}.{module.name}")
    _store_generic()
    from forgetbench.strategies.plugins import load_plugins

    load_plugins()


def list_strategies(pattern: str = "*") -> list[str]:
    """Registered names matching a shell-style wildcard, sorted."""
    load_all()
    return sorted(n for n in _REGISTRY if fnmatch.fnmatch(n, pattern))


def get_strategy(name: str) -> StrategyInfo:
    """The registered strategy ``name``, or ``avalanche.<Class>`` for any ``avalanche.training`` strategy."""
    load_all()
    if name in _REGISTRY:
        return _REGISTRY[name]
    if name.startswith(f"{GENERIC}."):
        return _generic(name.split(".", 1)[1])
    raise ValueError(f"unknown strategy {name!r}; choose one of {list_strategies()} "
                     f"(or strategy={GENERIC} strategy.cls=<a class of avalanche.training>)")


def _generic(cls_name: str) -> StrategyInfo:
    import avalanche.training as training
    from avalanche.training.templates import BaseTemplate

    choices = sorted(n for n, c in vars(training).items() if isinstance(c, type) and issubclass(c, BaseTemplate)
                     and n[0].isupper() and not n.endswith("Template"))
    if cls_name not in choices:
        raise ValueError(f"strategy.cls={cls_name!r} is not a strategy of avalanche.training; choose one of {choices}")
    cls = getattr(training, cls_name)
    defaults = {k: v for k, v in _signature_params(cls).items() if v is not inspect.Parameter.empty}
    return StrategyInfo(f"{GENERIC}.{cls_name}", cls, defaults, SCENARIOS, False, False, False, None,
                        f"avalanche.training.{cls_name}, run as it is", "avalanche", open_params=True)
