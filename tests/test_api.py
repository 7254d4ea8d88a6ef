"""The public API at ``forgetbench`` itself and the console scripts."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import forgetbench
from tests.conftest import REPO, TINY

BIN = Path(sys.executable).parent


def test_import_is_cheap_and_every_public_name_resolves(tmp_path):
    code = ("import sys, forgetbench; light = 'torch' not in sys.modules; "
            "names = {n: type(getattr(forgetbench, n)).__name__ for n in forgetbench.__all__}; "
            "import json; print(json.dumps([light, names]))")
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True)
    light, names = json.loads(out.stdout)
    assert light, "import forgetbench must not import torch"
    assert {"compose", "run", "register_strategy", "Memory", "SupervisedTemplate", "SupervisedPlugin",
            "summarize", "average_accuracy", "backward_transfer", "average_forgetting"} <= set(names)
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        forgetbench.nope  # noqa: B018


def test_compose_and_run_from_python_return_the_record(mnist_root, tmp_path):
    cfg = forgetbench.compose([f"data.root={mnist_root}", f"results_dir={tmp_path}", *TINY, "strategy=replay",
                               "strategy.mem_size=20"])
    record = forgetbench.run(cfg)
    [path] = (tmp_path / "python").glob("*/record.json")  # <results_dir>/python/<time>__<run name>/
    assert path.parent.name.endswith(cfg.run_name) and json.loads(path.read_text())["status"] == "ok"
    assert record["metrics"]["acc"] == pytest.approx(forgetbench.average_accuracy(record["accuracy_matrix"]))
    metrics = forgetbench.summarize(record["accuracy_matrix"])
    assert record["metrics"]["bwt"] == pytest.approx(metrics["bwt"]) == pytest.approx(
        forgetbench.backward_transfer(record["accuracy_matrix"]))


class Frozen(forgetbench.SupervisedTemplate):
    """Trains only the output layer (a strategy written in a notebook)."""

    def __init__(self, *, model, **kwargs):
        model.backbone.requires_grad_(False)
        super().__init__(model=model, **kwargs)


def test_a_strategy_registered_from_python_runs_and_is_recorded_by_its_name(mnist_root, tmp_path, tiny_cfg,
                                                                           clean_registry):
    forgetbench.register_strategy("frozen_backbone", scenarios=("class",))(Frozen)
    assert "frozen_backbone" in forgetbench.list_strategies()
    frozen = forgetbench.run(tiny_cfg("strategy=frozen_backbone"), tmp_path / "frozen")
    naive = forgetbench.run(tiny_cfg("strategy=naive"), tmp_path / "naive")
    assert frozen["strategy"] == "frozen_backbone" and frozen["strategy_info"]["source"] == __name__
    assert not np.array_equal(frozen["accuracy_matrix"], naive["accuracy_matrix"])


@pytest.mark.parametrize("command", [["forgetbench-speed", "--help"], ["forgetbench-strategies", "*ewc"],
                                     [sys.executable, "-m", "forgetbench", "--cfg", "job", "strategy=ewc"]])
def test_console_scripts_run_from_any_folder(command, tmp_path):
    if not command[0].startswith("/"):
        command = [str(BIN / command[0]), *command[1:]]
    out = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert {"forgetbench-speed": "--sweep", "forgetbench-strategies": "online_ewc"}.get(
        Path(command[0]).name, "  ewc_lambda: ") in out.stdout
    assert not (tmp_path / "outputs").exists() and REPO.is_dir()
