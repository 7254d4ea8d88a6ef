"""The registry, its configs, and a tiny run of every registered strategy in every scenario."""
from pathlib import Path

import numpy as np
import pytest

import strategies
from benchmarks.experiment import ConfigError, run
from tests.conftest import TINY, compose_cfg

CONF = Path(__file__).resolve().parents[1] / "conf" / "strategy"


def test_every_registered_strategy_has_a_config_and_vice_versa():
    assert sorted(p.stem for p in CONF.glob("*.yaml")) == strategies.list_strategies()
    for name in strategies.list_strategies():
        assert compose_cfg([f"strategy={name}"]).strategy.name == name


def test_list_strategies_accepts_wildcards():
    assert strategies.list_strategies("*ewc") == ["ewc", "online_ewc"]


def test_unknown_strategy_lists_the_choices():
    with pytest.raises(ValueError, match=r"unknown strategy 'foo'; choose one of \[.*'naive'.*'replay'"):
        strategies.get_strategy("foo")


def test_unsupported_scenario_is_a_clear_error(mnist_root, tmp_path):
    @strategies.register_strategy("_class_only", scenarios=("class",))
    class ClassOnly:  # never instantiated: validation happens before anything is built
        pass

    cfg = compose_cfg(["strategy=naive", "scenario=task", *TINY])
    cfg.strategy.name = "_class_only"
    with pytest.raises(ConfigError, match=r"does not support the 'task' scenario; it supports \['class'\]"):
        run(cfg, tmp_path / "run")


CASES = [(name, scenario) for name in strategies.list_strategies()
         for scenario in strategies.get_strategy(name).scenarios]


TINY_PARAMS = {  # keep buffers and sleeps in proportion to the tiny stream
    "replay": ["strategy.mem_size=20"],
    "sleep_cls": ["strategy.mem_size=20"],
    "sleep_src": ["strategy.iterations=200", "strategy.increment=50"],
}


@pytest.mark.parametrize("name,scenario", CASES)
def test_every_strategy_runs_a_tiny_stream(name, scenario, mnist_root, tmp_path):
    cfg = compose_cfg([f"strategy={name}", f"scenario={scenario}", *TINY, *TINY_PARAMS.get(name, [])])
    record = run(cfg, tmp_path / "run")
    acc = np.array(record["accuracy_matrix"], dtype=float)
    assert record["status"] == "ok" and acc.shape == (6, 5)
    assert not np.isnan(acc[0]).any() and not np.isnan(acc[-1]).any()
    assert ((acc[-1] >= 0) & (acc[-1] <= 1)).all()
    assert strategies.get_strategy(name).offline == np.isnan(acc[1:-1]).all()


AVALANCHE = {  # other Avalanche strategies, run unchanged on forgetbench's streams
    "LwF": ["+strategy.alpha=1.0", "+strategy.temperature=2.0"],
    "SynapticIntelligence": ["+strategy.si_lambda=1.0"],
    "MAS": [],
    "AGEM": ["+strategy.patterns_per_exp=16"],
    "GDumb": ["+strategy.mem_size=40"],
    "DER": ["+strategy.mem_size=40"],  # calls model(x) without task labels: single-head only, in Avalanche too
    "ER_ACE": ["+strategy.mem_size=40"],
}


@pytest.mark.parametrize("target,scenario", [(t, s) for t in sorted(AVALANCHE) for s in ("class", "task")
                                             if not (t == "DER" and s == "task")])
def test_other_avalanche_strategies_run_unchanged(target, scenario, mnist_root, tmp_path):
    cfg = compose_cfg(["strategy=naive", f"strategy._target_=avalanche.training.{target}", *AVALANCHE[target],
                       f"scenario={scenario}", *TINY])
    record = run(cfg, tmp_path / "run")
    assert record["status"] == "ok" and not np.isnan(np.array(record["accuracy_matrix"])).any()
