"""The run config's schema: every key and value is checked before any data is read.

Keys. A node that builds something (``_target_``: the model function, the optimizer class, the
stream) accepts the keyword parameters of what it builds; ``strategy`` accepts its registered
parameters; every other node accepts the keys forgetbench's own YAML files give it. An unknown
key, however it got there (``+epoch=2`` or ``strategy.mem_sise=10``), is refused with the nearest
known one.

Values. :data:`RULES` types and bounds the harness's own keys (``scenario``, ``stream.kind`` and
``device`` are checked where they are chosen, naming the choices); the values of the model, optimizer
and strategy are checked against the annotations of their parameters (``int``, ``float``, ``bool``,
``str``, ``Literal``, ``Optional``, lists), with ``Annotated[int, Bounds(min=1)]`` for a range
(a strategy's memory bound, ``Memory.samples``, is always at least 1).

Each problem is one line naming the key, the value and what is allowed.
"""
from __future__ import annotations

import collections.abc
import contextlib
import difflib
import functools
import importlib
import inspect
import itertools
import sys
import typing
from dataclasses import dataclass
from importlib import resources
from typing import Annotated, Any, Literal, Optional, Union

from omegaconf import DictConfig, OmegaConf

from forgetbench.benchmarks.streams import KINDS


@dataclass(frozen=True)
class Bounds:
    """The allowed range of a number: ``Annotated[int, Bounds(min=1)]``."""

    min: float | None = None
    max: float | None = None
    exclusive_min: bool = False
    exclusive_max: bool = False

    def holds(self, value) -> bool:
        if self.min is not None and (value <= self.min if self.exclusive_min else value < self.min):
            return False
        return self.max is None or (value < self.max if self.exclusive_max else value <= self.max)

    def __str__(self) -> str:
        low = "" if self.min is None else f"{'>' if self.exclusive_min else '>='} {self.min:g}"
        high = "" if self.max is None else f"{'<' if self.exclusive_max else '<='} {self.max:g}"
        return " and ".join(p for p in (low, high) if p)


POSITIVE = Bounds(min=1)
# Annotations for strategy parameters, e.g. ``mem_size: Positive = 1000``
Positive = Annotated[int, POSITIVE]
NonNegative = Annotated[float, Bounds(min=0)]
Fraction = Annotated[float, Bounds(min=0, max=1)]
PositiveFloat = Annotated[float, Bounds(min=0, exclusive_min=True)]
NonNegativeInt = Annotated[int, Bounds(min=0)]
RULES = {  # the harness's keys: type (with bounds)
    "seed": Annotated[int, Bounds(min=0)],
    "epochs": Optional[Annotated[int, POSITIVE]],
    "iterations": Optional[Annotated[int, POSITIVE]],
    "active_classes": Literal["all", "seen"],
    "batch_size": Annotated[int, POSITIVE],
    "eval_batch_size": Annotated[int, POSITIVE],
    "threads": Optional[Annotated[int, POSITIVE]],
    "reset_optimizer": bool,
    "progress": bool,
    "force": bool,
    "device": str,
    "data.download": bool,
    "stream.n_experiences": Annotated[int, POSITIVE],
    "stream.max_train_per_exp": Optional[Annotated[int, POSITIVE]],
    "stream.max_test_per_exp": Optional[Annotated[int, POSITIVE]],
    "stream.validation": Optional[Annotated[float, Bounds(min=0, max=1, exclusive_max=True)]],
    "stream.augment": Optional[Literal["crop_flip"]],  # streams.AUGMENTATIONS
    "optimizer.lr": Annotated[float, Bounds(min=0, exclusive_min=True)],
    "model.dropout": Annotated[float, Bounds(min=0, max=1)],
}
BUILT = {"model": {"input_shape", "num_outputs", "num_heads"}, "optimizer": {"params"}}  # passed by the harness


def check(cfg: DictConfig, strategy_info) -> None:
    """Raise ``ConfigError`` listing every unknown key and invalid value of ``cfg`` (one line each)."""
    from forgetbench.benchmarks.experiment import ConfigError

    config = OmegaConf.to_container(cfg, resolve=True)
    problems = [*unknown_keys(config, strategy_info), *invalid_values(config, strategy_info)]
    if problems:
        raise ConfigError("\n".join(problems) if len(problems) == 1 else "invalid config:\n  " + "\n  ".join(problems))


# ---------------------------------------------------------------- keys
@functools.cache
def _yaml_keys(group: str | None) -> dict:
    """The keys forgetbench's YAML files give the root (``None``) or a group's node: a nested dict of known keys."""
    conf = resources.files("forgetbench.conf")
    paths = [conf / "config.yaml"] if group is None else sorted(
        (p for p in (conf / group).iterdir() if p.name.endswith(".yaml")), key=lambda p: p.name)
    merged: dict = {}
    for path in paths:
        node = OmegaConf.to_container(OmegaConf.create(path.read_text()), resolve=False)
        node.pop("defaults", None)
        merged = _union(merged, node)
    return merged


def _union(a: dict, b: dict) -> dict:
    out = dict(a)
    for k, v in b.items():
        out[k] = _union(out[k], v) if isinstance(out.get(k), dict) and isinstance(v, dict) else (
            v if isinstance(v, dict) else out.get(k, v))
    return out


def _target(path: str):
    module, _, name = path.rpartition(".")
    return getattr(importlib.import_module(module), name)


def _target_params(node: dict, group: str) -> dict[str, inspect.Parameter] | None:
    """The parameters a ``_target_`` node may set (None when they can't be known)."""
    try:
        target = _target(node["_target_"])
    except (ImportError, AttributeError, ValueError):
        return None
    callables = [target]
    if group == "stream" and node.get("kind") in KINDS:  # build_stream passes **kwargs on to the kind's builder
        callables.append(KINDS[node["kind"]])
    params: dict = {}
    for fn in callables:
        for p in inspect.signature(fn).parameters.values():
            if p.kind == p.VAR_KEYWORD and fn is callables[-1]:
                return None  # takes any keyword: nothing to check against
            if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL) and p.name not in BUILT.get(group, ()):
                params.setdefault(p.name, p)
    return params


def _known(config: dict, strategy_info) -> dict:
    """A nested dict whose keys are the keys ``config`` may have."""
    known = {k: v for k, v in _yaml_keys(None).items()}
    for group in ("stream", "model", "optimizer", "logger"):
        node = config.get(group)
        params = _target_params(node, group) if isinstance(node, dict) and "_target_" in node else None
        known[group] = {"_target_": None, "name": None, **params} if params is not None else _yaml_keys(group)
    known["strategy"] = None  # its parameters are the registry's to check (StrategyInfo.params)
    known["hydra"] = None  # Hydra's own node: Hydra checks it
    return known


def _walk(config: dict, known, prefix: str = ""):
    for key, value in config.items():
        dotted = f"{prefix}{key}"
        if known is None or not isinstance(known, dict):
            continue
        if key not in known:
            yield dotted, [f"{prefix}{k}" for k in known]
        elif isinstance(value, dict) and isinstance(known[key], dict):
            yield from _walk(value, known[key], f"{dotted}.")


def unknown_keys(config: dict, strategy_info) -> list[str]:
    problems = []
    if strategy_info is not None:
        try:
            strategy_info.params(config.get("strategy") or {})
        except ValueError as error:
            problems.append(str(error))
    for dotted, siblings in _walk(config, _known(config, strategy_info)):
        problems.append(_unknown(dotted, siblings))
    return problems


def _unknown(dotted: str, siblings: list[str]) -> str:
    close = difflib.get_close_matches(dotted, siblings, n=1, cutoff=0.6)
    hint = f"did you mean {close[0]}?" if close else f"known keys here: {', '.join(siblings)}"
    return f"unknown config key {dotted!r}; {hint}"


def check_overrides(args) -> None:
    """Refuse a command-line override ``key=value`` of a key the config does not have, naming the
    nearest one, before Hydra would answer only "use +key=value". The config is composed with the
    command's group choices (the first of a sweep's); ``+key``, ``~key`` and ``hydra.*`` are left to Hydra
    and to :func:`check`."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from forgetbench.benchmarks.experiment import ConfigError, compose

    try:
        overrides = OverridesParser.create().parse_overrides([a for a in args if "=" in a and not a.startswith("-")])
    except Exception:  # a syntax error: Hydra reports it
        return
    groups = {p.name for p in resources.files("forgetbench.conf").iterdir() if p.is_dir()} | {"strategy"}
    choices, plain = {}, []
    for o in overrides:
        if o.is_hydra_override() or o.is_delete() or o.is_add() or o.is_force_add():
            continue
        if o.key_or_group in groups:
            value = o.value()
            choices[o.key_or_group] = [str(v) for v in value.list] if hasattr(value, "list") else [str(value)]
        else:
            plain.append(o.key_or_group)
    problems, combinations = [], list(itertools.product(*choices.values())) if plain else []
    for combination in combinations:  # every config the command makes (a sweep: several)
        chosen = [f"{group}={value}" for group, value in zip(choices, combination)]
        try:
            cfg = compose(chosen)
        except Exception:  # e.g. an unknown group option: Hydra names the choices
            return
        for dotted in plain:
            parent_key, _, leaf = dotted.rpartition(".")
            parent = OmegaConf.select(cfg, parent_key) if parent_key else cfg
            if isinstance(parent, DictConfig) and leaf not in parent and OmegaConf.is_struct(parent):
                where = f" (with {' '.join(chosen)})" if len(combinations) > 1 else ""
                problem = _unknown(dotted, [f"{parent_key}.{k}" if parent_key else str(k) for k in parent])
                owners = _strategies_with(leaf, choices.get("strategy", [])) if parent_key == "strategy" else []
                if owners:  # a knob of some of the swept strategies: say how to set it for those only
                    value = next((a.split("=", 1)[1] for a in args if a.split("=", 1)[0] == dotted), "...")
                    problem = (f"unknown config key {dotted!r}{where}: only {', '.join(owners)} ha"
                               f"{'s' if len(owners) == 1 else 've'} it; set it for "
                               f"{'that strategy' if len(owners) == 1 else 'those'} alone with "
                               + " ".join(f"+{PER_STRATEGY}.{o}.{leaf}={value}" for o in owners))
                problems.append(problem.replace(f"{dotted!r};", f"{dotted!r}{where};", 1))
    if problems:
        raise ConfigError("\n".join(problems))


# ---------------------------------------------------------------- per-strategy parameters
PER_STRATEGY = "per_strategy"


def fold_per_strategy(config: dict) -> dict:
    """``per_strategy.<name>.<param>=v`` sets a parameter of strategy ``<name>`` only, so one sweep
    can vary each strategy's own knobs (``-m strategy=naive,ewc +per_strategy.ewc.ewc_lambda=10,100``).
    Returns the config a run computes, records and is identified by: the run's own strategy's entries
    merged into ``strategy``, ``per_strategy`` removed (naive's runs in that sweep are then one config,
    run once)."""
    if PER_STRATEGY not in config:
        return config
    knobs = config[PER_STRATEGY] or {}
    config = {k: v for k, v in config.items() if k != PER_STRATEGY}
    strategy = config.get("strategy") or {}
    own = knobs.get(strategy.get("name")) if isinstance(knobs, dict) else None
    config["strategy"] = {**strategy, **own} if isinstance(own, dict) else strategy
    return config


def per_strategy_problems(knobs: dict | None) -> list[str]:
    """One line per ``per_strategy`` entry naming no registered strategy or a parameter it lacks."""
    from forgetbench.strategies.registry import get_strategy

    problems = []
    for name, params in (knobs or {}).items():
        if not isinstance(params, dict):
            problems.append(f"{PER_STRATEGY}.{name} must hold parameters ({PER_STRATEGY}.{name}.<param>=...), "
                            f"got {params!r}")
            continue
        try:
            info = get_strategy(name)
        except ValueError as error:
            problems.append(f"{PER_STRATEGY}.{name}: {error}")
            continue
        try:
            info.params(params)
        except ValueError as error:
            problems.append(f"{PER_STRATEGY}.{name}: {str(error).replace('strategy.', f'{PER_STRATEGY}.{name}.')}")
    return problems


def _strategies_with(param: str, names: list[str]) -> list[str]:
    """The strategies among ``names`` that have parameter ``param``."""
    from forgetbench.strategies.registry import get_strategy

    out = []
    for name in names:
        with contextlib.suppress(ValueError):
            if param in get_strategy(name).defaults:
                out.append(name)
    return out


# ---------------------------------------------------------------- values
def _lookup(config: dict, dotted: str):
    node = config
    for key in dotted.split("."):
        if not isinstance(node, dict) or key not in node:
            return _ABSENT
        node = node[key]
    return node


_ABSENT = object()


def conforms(value, hint) -> bool:
    """Whether a config value (None, bool, int, float, str, list, dict) fits a type annotation."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint in (Any, inspect.Parameter.empty) or isinstance(hint, (str, typing.TypeVar)):
        return True
    if origin is Annotated:
        bounds = [a for a in args[1:] if isinstance(a, Bounds)]
        return conforms(value, args[0]) and all(b.holds(value) for b in bounds)
    if origin is Union or (origin is not None and str(origin) == "<class 'types.UnionType'>"):
        return any(conforms(value, a) for a in args)
    if hint is type(None) or hint is None:
        return value is None
    if origin is Literal:
        return value in args
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if origin in (list, tuple, collections.abc.Sequence, collections.abc.Iterable) or hint in (list, tuple):
        return isinstance(value, (list, tuple)) and (not args or all(conforms(v, args[0]) for v in value))
    if origin is dict or hint is dict:
        return isinstance(value, dict)
    if isinstance(hint, type):
        return isinstance(value, hint)
    return True  # an annotation the config cannot be checked against


def describe(hint) -> str:
    """What an annotation allows, in words: ``an integer >= 1 or null``."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is Annotated:
        bounds = " ".join(str(a) for a in args[1:] if isinstance(a, Bounds))
        return f"{describe(args[0])} {bounds}".strip()
    if origin is Union or (origin is not None and str(origin) == "<class 'types.UnionType'>"):
        return " or ".join(describe(a) for a in args)
    if origin is Literal:
        return "one of " + ", ".join(str(a) for a in args)
    names = {bool: "true or false", int: "an integer", float: "a number", str: "a string", type(None): "null",
             None: "null", dict: "a mapping"}
    if hint in names:
        return names[hint]
    if origin in (list, tuple, collections.abc.Sequence, collections.abc.Iterable) or hint in (list, tuple):
        return f"a list of {describe(args[0])}" if args else "a list"
    return getattr(hint, "__name__", str(hint))


def _hints(fn) -> dict:
    """Annotations of ``fn``'s parameters, resolved where possible (raw strings are not checked)."""
    try:
        return typing.get_type_hints(fn, include_extras=True)
    except Exception:  # unresolvable forward references (e.g. names imported only for type checkers)
        return {name: p.annotation for name, p in inspect.signature(fn).parameters.items()}


def _strategy_hints(info) -> dict:
    hints = {k: v for k, v in _hints(info.cls.__init__).items() if k in info.defaults}
    samples = info.memory.samples if info.memory else None
    if samples in hints:
        hints[samples] = Annotated[hints[samples], POSITIVE]
    return hints


def _stream_problems(stream: dict) -> list[str]:
    """The dataset exists, and a split stream divides its classes evenly (and orders all of them)."""
    from forgetbench.benchmarks.data import SPECS

    dataset, n = stream.get("dataset"), stream.get("n_experiences")
    if dataset not in SPECS:
        return [f"stream.dataset={dataset}: must be one of {', '.join(SPECS)}"]
    classes = SPECS[dataset].classes
    if stream.get("kind") != "split" or not isinstance(n, int) or n < 1:
        return []
    problems = []
    if classes % n:
        divisors = [str(d) for d in range(1, classes + 1) if classes % d == 0]
        problems.append(f"stream.n_experiences={n}: {dataset}'s {classes} classes cannot be split into {n} "
                        f"equal experiences; must be one of {', '.join(divisors)}")
    order = stream.get("class_order")
    if order is not None and sorted(order) != list(range(classes)):
        problems.append(f"stream.class_order={order}: must be a permutation of 0..{classes - 1}, or null")
    return problems


def _protocol_problems(config: dict) -> list[str]:
    """The budget is epochs or iterations, never both; seen-classes softmax is a class-IL notion."""
    problems = []
    epochs, iterations = config.get("epochs"), config.get("iterations")
    if (epochs is None) == (iterations is None):
        problems.append(f"epochs={'null' if epochs is None else epochs} and iterations="
                        f"{'null' if iterations is None else iterations}: set exactly one budget per experience, "
                        f"e.g. iterations={iterations or 2000} epochs=null, or epochs={epochs or 1} iterations=null")
    if config.get("active_classes") == "seen" and config.get("scenario") != "class":
        problems.append(f"active_classes=seen: only for scenario=class (scenario={config.get('scenario')} has "
                        "no output of an unseen class to leave out); use active_classes=all")
    return problems


def invalid_values(config: dict, strategy_info) -> list[str]:
    rules = dict(RULES)
    for group in ("model", "optimizer"):
        node = config.get(group)
        if isinstance(node, dict) and "_target_" in node:
            try:
                fn = _target(node["_target_"])
            except (ImportError, AttributeError, ValueError):
                continue
            hints = _hints(fn.__init__ if isinstance(fn, type) else fn)
            rules.update({f"{group}.{k}": v for k, v in hints.items() if k in node and f"{group}.{k}" not in rules})
    if strategy_info is not None and not strategy_info.open_params:
        rules.update({f"strategy.{k}": v for k, v in _strategy_hints(strategy_info).items()})
    problems = [*_stream_problems(config.get("stream") or {}), *_protocol_problems(config)]
    for refusal in strategy_info.config_problems(config) if strategy_info is not None else []:
        if config.get("allow_refused"):
            print(f"forgetbench: warning: running it anyway (allow_refused=true): {refusal}", file=sys.stderr)
        else:
            problems.append(f"{refusal} (allow_refused=true runs it anyway)")
    for dotted, hint in rules.items():
        value = _lookup(config, dotted)
        if value is not _ABSENT and not conforms(value, hint):
            shown = OmegaConf.to_yaml({"v": value}).strip()[3:] if isinstance(value, (list, dict)) else (
                "null" if value is None else str(value).lower() if isinstance(value, bool) else value)
            problems.append(f"{dotted}={shown}: must be {describe(hint)}")
    return problems
