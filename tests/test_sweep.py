"""Sweeps: resume by resolved config, failures that don't stop a sweep, [run k/N]."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_module
from omegaconf import OmegaConf

from forgetbench.benchmarks import sweep

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("FORGETBENCH_DATA", REPO.parent / "shared" / "data"))
TINY = ["stream.max_train_per_exp=64", "stream.max_test_per_exp=32", "progress=false", "device=cpu", "threads=1"]


def compose_cfg(overrides=()):
    with initialize_config_module(config_module="forgetbench.conf", version_base="1.3"):
        return compose("config", overrides=list(overrides))


def forgetbench(*args, check=True) -> subprocess.CompletedProcess:
    env = {**os.environ, "FORGETBENCH_DATA": str(DATA)}
    result = subprocess.run([sys.executable, "-m", "forgetbench.cli", *args], cwd=REPO, env=env,
                            capture_output=True, text=True, timeout=300)
    if check and result.returncode != 0:
        raise AssertionError(f"forgetbench {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return result


@pytest.fixture(scope="module")
def needs_mnist():
    if not (DATA / "MNIST" / "raw").is_dir():
        pytest.skip(f"real MNIST not found under {DATA}; set FORGETBENCH_DATA to a folder holding MNIST/raw")


def test_identity_ignores_volatile_keys_only():
    a = OmegaConf.to_container(compose_cfg(["results_dir=/a", "progress=false", "threads=2"]), resolve=True)
    b = OmegaConf.to_container(compose_cfg(["results_dir=/b", "sweep_name=other", "data.root=/elsewhere"]), resolve=True)
    c = OmegaConf.to_container(compose_cfg(["seed=1"]), resolve=True)
    assert sweep.config_key(a) == sweep.config_key(b)
    assert sweep.config_key(a) != sweep.config_key(c)
    assert "results_dir" in a and "results_dir" not in sweep.identity(a)  # identity copies, a keeps its keys


def test_find_finished_matches_config_not_directory(tmp_path):
    cfg = compose_cfg(["seed=3"])
    config = OmegaConf.to_container(cfg, resolve=True)
    (tmp_path / "0__renamed").mkdir()
    (tmp_path / "0__renamed" / "record.json").write_text(json.dumps({"status": "ok", "config": config}))
    (tmp_path / "1__broken").mkdir()
    (tmp_path / "1__broken" / "record.json").write_text('{"status": "ok", "conf')  # killed mid-write
    assert sweep.find_finished(cfg, tmp_path) == tmp_path / "0__renamed"
    assert sweep.find_finished(compose_cfg(["seed=4"]), tmp_path) is None
    (tmp_path / "0__renamed" / "record.json").write_text(json.dumps({"status": "failed", "config": config}))
    assert sweep.find_finished(cfg, tmp_path) is None


def test_sweep_size_counts_cli_and_config_sweeps():
    with initialize_config_module(config_module="forgetbench.conf", version_base="1.3"):
        cfg = compose("config", overrides=["experiment=demo"], return_hydra_config=True)
    cfg.hydra.overrides.task = ["experiment=demo", "seed=0,1", "scenario=class,task", "epochs=1"]  # as `-m` sees it
    assert sweep.sweep_size(cfg.hydra) == 3 * 2 * 2  # demo sweeps strategy=naive,ewc,replay


def test_resume_skips_finished_runs_and_reruns_unfinished(tmp_path, needs_mnist):
    args = ["-m", "strategy=naive,ewc", *TINY, f"results_dir={tmp_path}", "sweep_name=grid"]
    first = forgetbench(*args)
    assert "[run 1/2]" in first.stdout and "[run 2/2]" in first.stdout
    done, killed = sorted((tmp_path / "grid").glob("*/record.json"))
    done_mtime = done.stat().st_mtime_ns
    killed.unlink()  # the sweep was killed while this run was training

    second = forgetbench(*args)
    assert second.stdout.count("skipped, already finished") == 1
    assert done.stat().st_mtime_ns == done_mtime  # never re-run
    assert json.loads(killed.read_text())["status"] == "ok"  # re-run

    third = forgetbench(*args, "force=true")
    assert "skipped" not in third.stdout
    assert done.stat().st_mtime_ns != done_mtime


@pytest.mark.parametrize("launcher", [[], ["launcher=joblib", "hydra.launcher.n_jobs=2"]], ids=["basic", "joblib"])
def test_failed_run_is_recorded_does_not_stop_the_sweep_and_exits_1(launcher, tmp_path, needs_mnist):
    result = forgetbench("-m", "stream.dataset=nope,mnist", *launcher, *TINY, f"results_dir={tmp_path}",
                         "sweep_name=grid", check=False)
    assert result.returncode == 1, result.stderr
    paths = sorted((tmp_path / "grid").glob("*/record.json"))
    failed, ok = (json.loads(p.read_text()) for p in paths)
    assert failed["status"] == "failed" and "stream.dataset=nope: must be one of mnist" in failed["error"]
    assert ok["status"] == "ok"
    assert "[run 1/2] split_mnist__class__naive__s0: FAILED with stream.dataset=nope: must be one of" in result.stderr
    assert f"see {paths[0]}" in result.stderr  # the record it points at exists
    assert "forgetbench: sweep of 2 run(s): 1 failed, 1 ok" in result.stdout
    assert f"  failed: {paths[0]}" in result.stderr.splitlines()


def test_sweep_of_ok_runs_exits_0(tmp_path, needs_mnist):
    result = forgetbench("-m", "seed=0,1", *TINY, f"results_dir={tmp_path}", "sweep_name=grid")
    assert result.returncode == 0 and "forgetbench: sweep of 2 run(s): 2 ok" in result.stdout
    assert "FAILED" not in result.stderr


def test_failed_single_run_exits_nonzero(tmp_path, needs_mnist):
    result = forgetbench("stream.dataset=nope", *TINY, f"results_dir={tmp_path}", check=False)
    assert result.returncode == 2  # a user error: one line naming the fix, no traceback
    assert "forgetbench: error: stream.dataset=nope: must be one of mnist" in result.stderr


def test_a_changed_config_never_overwrites_a_finished_run_and_every_command_is_kept(tmp_path, needs_mnist):
    base = ["-m", "seed=0", "progress=false", "device=cpu", "stream.max_test_per_exp=32", f"results_dir={tmp_path}",
            "sweep_name=x"]
    forgetbench(*base, "stream.max_train_per_exp=64")
    forgetbench(*base, "stream.max_train_per_exp=32")  # same sweep_name, same job number, another config
    records = {p.parent.name: json.loads(p.read_text()) for p in (tmp_path / "x").glob("*/record.json")}
    assert sorted(r["config"]["stream"]["max_train_per_exp"] for r in records.values()) == [32, 64]
    for name, record in records.items():  # each in the directory its config names
        assert name.startswith("0__split_mnist__class__naive__s0__") and name.endswith(sweep.config_hash(record["config"]))
        assert record["sweep_command"].startswith("forgetbench -m seed=0 ")
        assert record["command"].startswith("forgetbench seed=0 ") and "-m" not in record["command"].split()
    log = (tmp_path / "x" / "commands.log").read_text().splitlines()
    assert [line.split("\t")[1].rsplit(" ", 1)[1] for line in log] == ["stream.max_train_per_exp=64",
                                                                          "stream.max_train_per_exp=32"]


def test_per_strategy_sweeps_each_strategys_own_knob_once(tmp_path, needs_mnist):
    result = forgetbench("-m", "strategy=naive,ewc", "+per_strategy.ewc.ewc_lambda=10,100", *TINY,
                         f"results_dir={tmp_path}", "sweep_name=k")
    assert "forgetbench: sweep of 4 run(s): 3 ok, 1 skipped" in result.stdout  # naive's 2 jobs are one config
    records = [json.loads(p.read_text()) for p in (tmp_path / "k").glob("*/record.json")]
    assert sorted((r["strategy"], r["config"]["strategy"].get("ewc_lambda")) for r in records) == [
        ("ewc", 10), ("ewc", 100), ("naive", None)]
    assert all("per_strategy" not in r["config"] for r in records)  # recorded as what ran


def test_a_knob_only_some_swept_strategies_have_is_refused_with_the_per_strategy_form(tmp_path):
    result = forgetbench("-m", "strategy=naive,ewc", "strategy.ewc_lambda=10,100", f"results_dir={tmp_path}",
                         check=False)
    assert result.returncode == 2 and not (tmp_path / "multirun").exists()
    assert ("unknown config key 'strategy.ewc_lambda' (with strategy=naive): only ewc has it; set it for that "
            "strategy alone with +per_strategy.ewc.ewc_lambda=10,100") in result.stderr


def test_per_strategy_entries_are_checked_and_folded():
    from forgetbench.benchmarks.schema import fold_per_strategy, per_strategy_problems

    config = {"seed": 0, "strategy": {"name": "ewc", "ewc_lambda": 1.0}, "per_strategy": {"ewc": {"ewc_lambda": 5},
                                                                                         "replay": {"mem_size": 9}}}
    assert fold_per_strategy(config) == {"seed": 0, "strategy": {"name": "ewc", "ewc_lambda": 5}}
    assert sweep.config_key(config) == sweep.config_key({"seed": 0, "strategy": {"name": "ewc", "ewc_lambda": 5}})
    assert per_strategy_problems(config["per_strategy"]) == []
    problems = per_strategy_problems({"replay": {"mem_sise": 9}, "ewx": {"a": 1}, "ewc": 3})
    assert problems[0].startswith("per_strategy.replay: strategy 'replay' has no parameter 'mem_sise'; "
                                  "did you mean per_strategy.replay.mem_size?")
    assert problems[1].startswith("per_strategy.ewx: unknown strategy 'ewx'; choose one of [")
    assert problems[2] == "per_strategy.ewc must hold parameters (per_strategy.ewc.<param>=...), got 3"
