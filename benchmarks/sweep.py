"""Sweeps: resume by resolved config, and "[run k/N]" progress.

A run of a sweep is *done* when some ``record.json`` in the sweep directory has status ``ok``
and the same resolved config, ignoring the keys in :data:`VOLATILE` (where output goes, how
it is shown, how many threads compute it). Directory names are not compared: job numbers
shift when a grid grows, and a run's identity is its config.
"""
from __future__ import annotations

import copy
import json
import os
from pathlib import Path

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from forgetbench.benchmarks.records import read_record

# Dotted config keys that do not change what a run computes.
VOLATILE = ("hydra", "progress", "force", "threads", "results_dir", "sweep_name", "run_name",
            "data.root", "data.download", "stream.root", "stream.download")
SWEEP_SIZE_ENV = "FORGETBENCH_SWEEP_SIZE"


def identity(config: dict) -> dict:
    """The config without its :data:`VOLATILE` keys."""
    config = copy.deepcopy(config)
    for dotted in VOLATILE:
        *parents, leaf = dotted.split(".")
        node = config
        for key in parents:
            node = node.get(key) if isinstance(node, dict) else None
        if isinstance(node, dict):
            node.pop(leaf, None)
    return config


def config_key(config: dict) -> str:
    """A string equal for two resolved configs exactly when their :func:`identity` is equal."""
    return json.dumps(identity(config), sort_keys=True, default=str)


def find_finished(cfg: DictConfig, sweep_dir: Path) -> Path | None:
    """The run directory under ``sweep_dir`` holding a finished run of this config, if any."""
    key = config_key(OmegaConf.to_container(cfg, resolve=True))
    for path in sorted(Path(sweep_dir).glob("*/record.json")):
        record = read_record(path)
        if record and record.get("status") == "ok" and config_key(record.get("config") or {}) == key:
            return path.parent
    return None


def sweep_size(hydra_cfg: DictConfig) -> int | None:
    """Number of runs Hydra's basic sweeper makes of this multirun config (None for other sweepers)."""
    if not str(hydra_cfg.sweeper.get("_target_", "")).endswith("BasicSweeper"):
        return None
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper

    params = [f"{k}={v}" for k, v in (hydra_cfg.sweeper.get("params") or {}).items()]
    overrides = OverridesParser.create().parse_overrides(params + list(hydra_cfg.overrides.task))
    return len(BasicSweeper.split_arguments(overrides, None)[0])


class SweepSizeCallback(Callback):
    """Puts the sweep's size in the environment, which the jobs (also joblib's workers) inherit."""

    def on_multirun_start(self, config: DictConfig, **kwargs) -> None:
        size = sweep_size(config.hydra)
        if size is not None:
            os.environ[SWEEP_SIZE_ENV] = str(size)


def run_label(job_num: int) -> str:
    """``[run k/N]`` (``[run k]`` when the sweep size is unknown), k counted from 1."""
    size = os.environ.get(SWEEP_SIZE_ENV)
    return f"[run {job_num + 1}/{size}]" if size else f"[run {job_num + 1}]"
