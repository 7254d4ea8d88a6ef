"""The config schema (benchmarks/schema.py): every bad value or unknown key is refused before any data
is read, in one line naming the key, the value and what is allowed."""
import re
from typing import Annotated, Literal, Optional

import pytest

from forgetbench import Bounds, SupervisedTemplate, register_strategy
from forgetbench.benchmarks.experiment import ConfigError, run
from forgetbench.benchmarks.schema import check_overrides, conforms, describe
from tests.conftest import compose_cfg

NO_DATA = "/nonexistent/forgetbench-data"  # any attempt to read data would fail differently

BAD_VALUES = {  # override -> the one line expected
    "epochs=0": "epochs=0: must be an integer >= 1",
    "epochs=-1": "epochs=-1: must be an integer >= 1",
    "epochs=abc": "epochs=abc: must be an integer >= 1",
    "seed=1.5": "seed=1.5: must be an integer >= 0",
    "threads=0": "threads=0: must be an integer >= 1 or null",
    "batch_size=0": "batch_size=0: must be an integer >= 1",
    "eval_batch_size=0": "eval_batch_size=0: must be an integer >= 1",
    "stream.n_experiences=0": "stream.n_experiences=0: must be an integer >= 1",
    "stream.max_train_per_exp=0": "stream.max_train_per_exp=0: must be an integer >= 1 or null",
    "optimizer.lr=abc": "optimizer.lr=abc: must be a number > 0",
    "optimizer.lr=0": "optimizer.lr=0: must be a number > 0",
    "model.dropout=1.5": "model.dropout=1.5: must be a number >= 0 and <= 1",
    "strategy=ewc strategy.ewc_lambda=abc": "strategy.ewc_lambda=abc: must be a number >= 0",
    "strategy=replay strategy.mem_size=0": "strategy.mem_size=0: must be an integer >= 1",
    "strategy=replay strategy.mem_size=-5": "strategy.mem_size=-5: must be an integer >= 1",
    "strategy=agem strategy.patterns_per_exp=0": "strategy.patterns_per_exp=0: must be an integer >= 1",
    "strategy=replay strategy.buffer=fifo": "strategy.buffer=fifo: must be one of experience_balanced, class_balanced, reservoir",
    "strategy=online_ewc strategy.decay_factor=2": "strategy.decay_factor=2: must be a number >= 0 and <= 1",
    "stream.dataset=nope": "stream.dataset=nope: must be one of mnist, fashion_mnist, cifar10, cifar100",
    "stream.n_experiences=3": "stream.n_experiences=3: mnist's 10 classes cannot be split into 3 equal experiences; "
                              "must be one of 1, 2, 5, 10",
    "stream.class_order=[0,1,2]": "stream.class_order=[0, 1, 2]: must be a permutation of 0..9, or null",
    "+epoch=2": "unknown config key 'epoch'; did you mean epochs?",
    "+stream.max_train_per_experience=5": "unknown config key 'stream.max_train_per_experience'; did you mean stream.max_train_per_exp?",
    "optimizer=sgd +optimizer.momentun=0.9": "unknown config key 'optimizer.momentun'; did you mean optimizer.momentum?",
    "+model.hiden_sizes=[3]": "unknown config key 'model.hiden_sizes'; did you mean model.hidden_sizes?",
    "strategy=replay +strategy.mem_sise=10": "strategy 'replay' has no parameter 'mem_sise'; did you mean strategy.mem_size?",
}


@pytest.mark.parametrize("overrides", BAD_VALUES, ids=list(BAD_VALUES))
def test_bad_values_and_unknown_keys_are_refused_before_any_data_is_read(overrides, tmp_path):
    cfg = compose_cfg(["progress=false", "device=cpu", *overrides.split()], root=NO_DATA)
    with pytest.raises(ConfigError) as error:
        run(cfg, tmp_path / "run")
    message = str(error.value)
    assert message.startswith(BAD_VALUES[overrides]) and "\n" not in message  # one line (the registry adds the list)


def test_several_problems_are_listed_together(tmp_path):
    cfg = compose_cfg(["epochs=0", "batch_size=0", "+epoch=2"], root=NO_DATA)
    with pytest.raises(ConfigError) as error:
        run(cfg, tmp_path / "run")
    lines = str(error.value).split("\n")
    assert lines[0] == "invalid config:" and len(lines) == 4


@pytest.mark.parametrize("args,expected", [
    (["strategy=replay", "strategy.mem_sise=10"], "unknown config key 'strategy.mem_sise'; did you mean strategy.mem_size?"),
    (["epoch=2"], "unknown config key 'epoch'; did you mean epochs?"),
    (["-m", "strategy=naive,replay", "strategy.mem_size=3"],
     "unknown config key 'strategy.mem_size' (with strategy=naive): only replay has it; set it for that "
     "strategy alone with +per_strategy.replay.mem_size=3"),
    (["-m", "strategy=naive,ewc", "strategy.mem_size=3"],
     "unknown config key 'strategy.mem_size' (with strategy=naive); did you mean strategy.name?"),
])
def test_command_line_overrides_of_unknown_keys_name_the_nearest(args, expected):
    """Without ``+``, Hydra itself would stop at these, suggesting only ``+key=value``."""
    with pytest.raises(ConfigError, match="^" + re.escape(expected)):
        check_overrides(args)


@pytest.mark.parametrize("args", [["strategy=replay,sleep_cls", "strategy.mem_size=3", "-m"], ["hydra.launcher.n_jobs=3"],
                                  ["strategy=avalanche", "strategy.cls=LwF", "strategy.alpha=1"], ["+epoch=2"]])
def test_valid_overrides_pass_the_command_line_check(args):
    check_overrides(args)  # +key is left to the run's schema check (test above)


class _Levels(SupervisedTemplate):
    def __init__(self, *, level: Annotated[int, Bounds(min=2, max=4)] = 3, mode: Literal["a", "b"] = "a", **kwargs):
        super().__init__(**kwargs)


def test_a_plugins_annotations_are_its_schema(clean_registry, tmp_path):
    register_strategy("_levels")(_Levels)
    with pytest.raises(ConfigError, match=r"^invalid config:\n  strategy.level=5: must be an integer >= 2 and <= 4\n"
                                          r"  strategy.mode=c: must be one of a, b$"):
        run(compose_cfg(["strategy=_levels", "strategy.level=5", "strategy.mode=c"], root=NO_DATA), tmp_path / "run")


@pytest.mark.parametrize("value,hint,ok", [
    (3, int, True), (True, int, False), (3, float, True), ("3", float, False), (None, Optional[int], True),
    ([1, 2], list[int], True), ([1, "x"], list[int], False), ((1.0, 2), tuple[float, ...], True),
    ("b", Literal["a", "b"], True), (0, Annotated[int, Bounds(min=1)], False), (0.5, Annotated[float, Bounds(0, 1)], True),
    (0, Annotated[float, Bounds(min=0, exclusive_min=True)], False), ("x", "SomeForwardRef", True),
])
def test_conforms_by_hand(value, hint, ok):
    assert conforms(value, hint) is ok


def test_describe_by_hand():
    assert describe(Optional[Annotated[int, Bounds(min=1)]]) == "an integer >= 1 or null"
    assert describe(list[float]) == "a list of a number"
    assert describe(Literal["x", "y"]) == "one of x, y"


@pytest.mark.parametrize("args,expected", [
    (["epoch=2"], "forgetbench: error: unknown config key 'epoch'; did you mean epochs?"),
    (["+epoch=2"], "forgetbench: error: unknown config key 'epoch'; did you mean epochs?"),
    (["epochs=0"], "forgetbench: error: epochs=0: must be an integer >= 1"),
], ids=["plain", "plus", "value"])
def test_the_command_refuses_in_one_line_without_a_traceback(args, expected, tmp_path):
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "forgetbench.cli", *args, f"data.root={NO_DATA}",
                          f"results_dir={tmp_path}"], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert out.returncode == 2, out.stderr[-2000:]
    assert out.stderr.startswith(expected) and "Traceback" not in out.stderr
