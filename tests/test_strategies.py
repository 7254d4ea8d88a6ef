"""The strategy registry's contract: one definition per strategy (class, name, capabilities, defaults),
configs that match it, refusals before training, and a tiny run of every strategy in every scenario it declares."""
import inspect

import numpy as np
import pytest
import yaml
from omegaconf import OmegaConf
from avalanche.training.templates import SupervisedTemplate

from forgetbench import strategies
from forgetbench.benchmarks.experiment import ConfigError, run
from forgetbench.strategies.registry import Memory, PerStream, _signature_params
from tests.conftest import REPO, compose_cfg, restoring_registry

NAMES = strategies.list_strategies()


@pytest.mark.parametrize("name", NAMES)
def test_the_config_option_is_the_registered_definition(name):
    """``strategy=<name>`` composes to the name and the signature's defaults (or the registration's, where
    the signature has none or the paper differs): no second copy that could drift."""
    info = strategies.get_strategy(name)
    signature = _signature_params(info.cls)
    assert set(info.defaults) == set(signature)
    for key, default in signature.items():
        default = list(default) if isinstance(default, tuple) else default  # YAML has lists, not tuples
        registered = info.defaults[key]
        registered = registered.default if isinstance(registered, PerStream) else registered  # the other streams'
        if default is not inspect.Parameter.empty and registered != default:
            assert info.cls.__module__.startswith("avalanche."), \
                f"{name}.{key}: forgetbench's own classes keep their defaults in the signature"
    cfg = compose_cfg([f"strategy={name}"])
    expected = {k: v.value(cfg.stream.name, cfg.scenario) if isinstance(v, PerStream) else v
                for k, v in info.defaults.items()}
    assert dict(cfg.strategy) == {"name": name, **expected}


def _experiment_strategies(doc: dict) -> set:
    """Every strategy an experiment file selects: its override and its sweep's."""
    names = {d["override /strategy"] for d in doc.get("defaults", []) if isinstance(d, dict) and "override /strategy" in d}
    sweep = ((doc.get("hydra") or {}).get("sweeper") or {}).get("params") or {}
    names |= set(str(sweep.get("strategy", "")).split(",")) - {""}
    return names or {"naive"}


@pytest.mark.parametrize("path", sorted((REPO / "conf" / "experiment").glob("*.yaml")), ids=lambda p: p.stem)
def test_experiment_files_set_only_parameters_their_strategies_have(path):
    doc = yaml.safe_load(path.read_text())
    keys = set((doc.get("strategy") or {}))
    for name in _experiment_strategies(doc):
        missing = keys - set(strategies.get_strategy(name).defaults)
        assert not missing, f"{path.name} sets strategy.{sorted(missing)}, which {name} does not have"


def test_list_strategies_accepts_wildcards():
    assert strategies.list_strategies("*ewc") == ["ewc", "online_ewc"]


def test_unknown_strategy_lists_the_choices():
    with pytest.raises(ValueError, match=r"unknown strategy 'foo'; choose one of \[.*'naive'.*'replay'"):
        strategies.get_strategy("foo")


@pytest.mark.parametrize("override,pattern", [
    ("+strategy.mem_sise=10", r"strategy 'replay' has no parameter 'mem_sise'; did you mean strategy.mem_size\?"),
    ("+strategy._target_=avalanche.training.LwF", r"has no parameter '_target_'.*strategy=avalanche strategy.cls="),
], ids=["typo", "target"])
def test_unknown_strategy_parameters_are_refused_before_training(override, pattern, tiny_cfg, tmp_path):
    with pytest.raises(ConfigError, match=pattern):
        run(tiny_cfg("strategy=replay", override, "data.root=/nonexistent"), tmp_path / "run")  # no data read


class _Minimal(SupervisedTemplate):
    """A strategy with one parameter and no default for another."""

    def __init__(self, *, strength: float = 0.5, required, **kwargs):
        super().__init__(**kwargs)


def test_registration_checks_defaults_against_the_signature(clean_registry):
    with pytest.raises(ValueError, match="parameter 'required' has no default"):
        strategies.register_strategy("_minimal")(_Minimal)
    with pytest.raises(ValueError, match=r"defaults for \['strenght'\], which _Minimal does not accept"):
        strategies.register_strategy("_minimal", defaults={"required": 1, "strenght": 1.0})(_Minimal)
    with pytest.raises(ValueError, match="task labels at test time supports only scenarios=\\('task',\\)"):
        strategies.register_strategy("_minimal", task_labels=True)(_Minimal)
    strategies.register_strategy("_minimal", defaults={"required": 1})(_Minimal)
    with pytest.raises(ValueError, match="already registered"):
        strategies.register_strategy("_minimal")(SupervisedTemplate)
    assert dict(compose_cfg(["strategy=_minimal"]).strategy) == {"name": "_minimal", "strength": 0.5, "required": 1}


def test_a_per_stream_default_resolves_for_the_run_and_yields_to_an_override(clean_registry):
    table = PerStream(0.5, {"permuted_mnist/*": 0.01, "*/domain": 0.1})
    strategies.register_strategy("_tuned", defaults={"required": 1, "strength": table})(_Minimal)

    def strength(*overrides):
        cfg = compose_cfg(["strategy=_tuned", *overrides])
        return OmegaConf.to_container(cfg, resolve=True)["strategy"]["strength"]  # as the run record keeps it

    assert strength("stream=split_mnist", "scenario=class") == 0.5  # no pattern matches: the default
    assert strength("stream=split_mnist", "scenario=domain") == 0.1
    assert strength("stream=permuted_mnist", "scenario=domain") == 0.01  # the first match wins
    assert strength("stream=permuted_mnist", "strategy.strength=3.0") == 3.0
    assert repr(table) == "0.5 (permuted_mnist/*: 0.01, */domain: 0.1)"  # as forgetbench-strategies -v shows it


def test_restoring_registry_removes_strategies_and_their_options():
    with restoring_registry():
        strategies.register_strategy("_temporary")(SupervisedTemplate)
        assert compose_cfg(["strategy=_temporary"]).strategy.name == "_temporary"
    assert "_temporary" not in strategies.list_strategies()
    with pytest.raises(Exception, match="Could not find 'strategy/_temporary'"):
        compose_cfg(["strategy=_temporary"])


def test_unsupported_scenario_is_refused_naming_the_allowed_ones(clean_registry, tiny_cfg, tmp_path):
    strategies.register_strategy("_class_only", scenarios=("class",))(_Minimal.__base__)
    with pytest.raises(ConfigError, match=r"does not support the 'task' scenario; it supports \['class'\]"):
        run(tiny_cfg("strategy=_class_only", "scenario=task"), tmp_path / "run")


class _NotOnPermuted(SupervisedTemplate):
    @staticmethod
    def config_problems(config):
        return ["refused on permuted streams; choose stream=split_mnist"] if config["stream"]["kind"] == "permuted" else []


def test_a_strategy_can_refuse_a_combination_before_any_data_is_read(clean_registry, tiny_cfg, tmp_path):
    strategies.register_strategy("_not_on_permuted")(_NotOnPermuted)
    with pytest.raises(ConfigError, match=r"^strategy=_not_on_permuted: refused on permuted streams; choose "
                                          r"stream=split_mnist \(allow_refused=true runs it anyway\)$"):
        run(tiny_cfg("strategy=_not_on_permuted", "stream=permuted_mnist", "scenario=domain", root=tmp_path / "no_data"),
            tmp_path / "refused")
    record = run(tiny_cfg("strategy=_not_on_permuted"), tmp_path / "split")
    assert record["status"] == "ok"


def _tiny_params(info) -> list[str]:
    """Keep buffers and sleeps in proportion to a 48-sample experience."""
    params = [f"strategy.{info.memory.samples}=20"] if info.memory and info.memory.samples in info.defaults else []
    if info.name == "sleep_src":
        params += ["strategy.iterations=200", "strategy.increment=50"]
    return params


CASES = [(name, scenario) for name in NAMES for scenario in strategies.get_strategy(name).scenarios]


@pytest.mark.parametrize("name,scenario", CASES)
def test_every_strategy_runs_a_tiny_stream_in_every_declared_scenario(name, scenario, mnist_root, tmp_path,
                                                                       tiny_cfg):
    info = strategies.get_strategy(name)
    record = run(tiny_cfg(f"strategy={name}", f"scenario={scenario}", *_tiny_params(info)), tmp_path / "run")
    acc = np.array(record["accuracy_matrix"], dtype=float)
    assert record["status"] == "ok" and acc.shape == (6, 5)
    assert not np.isnan(acc[0]).any() and not np.isnan(acc[-1]).any()
    assert ((acc[-1] >= 0) & (acc[-1] <= 1)).all()
    assert info.offline == np.isnan(acc[1:-1]).all()
    assert record["strategy"] == name
    assert record["strategy_info"]["class"] == f"{info.cls.__module__}.{info.cls.__qualname__}"
    assert record["memory"]["stores"] == info.memory.describe(compose_cfg(_tiny_params(info) + [f"strategy={name}"]).strategy)


def test_memory_is_counted_from_the_run(mnist_root, tmp_path, tiny_cfg):
    replay = run(tiny_cfg("strategy=replay", "strategy.mem_size=20"), tmp_path / "replay")["memory"]
    assert replay == {"samples": 20, "bytes": 20 * (28 * 28 + 8), "stores": "20 samples (mem_size)"}
    ewc = run(tiny_cfg("strategy=ewc", "model.hidden_sizes=[7]"), tmp_path / "ewc")["memory"]
    assert ewc["samples"] == 0 and ewc["bytes"] == 2 * 4 * (784 * 7 + 7 + 7 * 10 + 10)
    joint = run(tiny_cfg("strategy=joint"), tmp_path / "joint")["memory"]
    assert joint["samples"] == 5 * 48


def test_memory_usage_by_hand():
    usage = Memory(samples="k", per_experience=True, logits=True, networks=1.5).usage(
        {"k": 10}, train_samples=[100, 100, 5], input_numel=3, num_outputs=4, model_parameters=100)
    assert usage["samples"] == 25  # 10 per experience, but the last one has only 5
    assert usage["bytes"] == 25 * (3 + 8 + 16) + 600
    assert usage["stores"] == "10 samples (k) per experience + logits, 1.5 model copies"


def test_any_avalanche_strategy_runs_under_its_own_name(mnist_root, tmp_path, tiny_cfg):
    record = run(tiny_cfg("strategy=avalanche", "strategy.cls=LwF", "strategy.alpha=1.0", "strategy.temperature=2.0",
                          "scenario=task"), tmp_path / "lwf")
    assert record["status"] == "ok" and record["strategy"] == "avalanche.LwF"
    assert record["config"]["run_name"].split("__")[2] == "avalanche.LwF"
    assert record["strategy_info"]["class"].endswith(".LwF") and record["memory"] is None


@pytest.mark.parametrize("overrides,pattern", [
    (["strategy.cls=Foo"], r"strategy.cls='Foo' is not a strategy of avalanche.training; choose one of \[.*'LwF'"),
    (["strategy.cls=LwF", "strategy.alpah=1"], r"'avalanche.LwF' has no parameter 'alpah'; did you mean strategy.alpha"),
], ids=["unknown_class", "typo"])
def test_generic_entry_errors_name_the_fix(overrides, pattern, tiny_cfg, tmp_path):
    with pytest.raises(ConfigError, match=pattern):
        run(tiny_cfg("strategy=avalanche", *overrides), tmp_path / "run")
