"""Launcher configs: joblib splits the cores between jobs; the SLURM config resolves as documented."""
import subprocess
import sys
from pathlib import Path

import yaml
from forgetbench.conf import threads_per_job
from tests.conftest import compose_cfg

REPO = Path(__file__).resolve().parents[1]


def cfg_output(*args) -> dict:
    result = subprocess.run([sys.executable, "-m", "forgetbench.cli", *args], cwd=REPO, capture_output=True,
                            text=True, timeout=120, check=True)
    return yaml.safe_load(result.stdout)


def test_threads_per_job(monkeypatch):
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: set(range(16)))
    assert [threads_per_job(n) for n in (1, 2, 3, 16, 32, -1, -2)] == [16, 8, 5, 1, 1, 1, 1]


def test_joblib_launcher_selects_the_plugin():
    cfg = compose_cfg(["launcher=joblib", "hydra.launcher.n_jobs=4"], return_hydra_config=True)
    assert cfg.hydra.launcher._target_.endswith("JoblibLauncher")
    assert cfg.hydra.launcher.n_jobs == 4
    assert cfg.hydra.launcher.prefer == "processes"  # the plugin's defaults stay


def test_joblib_threads_resolve_to_cores_per_job():
    job = cfg_output("launcher=joblib", "hydra.launcher.n_jobs=2", "--cfg", "job", "--resolve")
    assert job["threads"] == threads_per_job(2)


def test_slurm_launcher_config():
    launcher = cfg_output("launcher=slurm", "hydra.launcher.partition=gpu", "--cfg", "hydra", "-p", "hydra.launcher")
    assert launcher["_target_"] == "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher"
    assert (launcher["partition"], launcher["gpus_per_node"], launcher["cpus_per_task"]) == ("gpu", 1, 4)
    assert (launcher["timeout_min"], launcher["array_parallelism"]) == (120, 32)
    assert launcher["submitit_folder"] == "${hydra.sweep.dir}/.submitit/%j"
    job = cfg_output("launcher=slurm", "hydra.launcher.cpus_per_task=8", "--cfg", "job", "--resolve")
    assert job["threads"] == 8
