"""forgetbench's Hydra config tree. Importing it (Hydra does, to read it) registers the resolvers
its YAML files use and the strategies: ``strategy=<name>`` options come from the registry
(forgetbench/strategies/registry.py), built-in and plugins alike, not from YAML files."""
import os

from omegaconf import OmegaConf

from forgetbench.benchmarks.sweep import run_config_hash
from forgetbench.strategies.registry import load_all


def threads_per_job(n_jobs: int) -> int:
    """CPU cores // parallel jobs, at least 1; ``n_jobs`` <= 0 counts like joblib's (-1: one job per core)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    n_jobs = int(n_jobs)
    jobs = n_jobs if n_jobs > 0 else max(1, cores + 1 + n_jobs)
    return max(1, cores // jobs)


OmegaConf.register_new_resolver("threads_per_job", threads_per_job, replace=True)
OmegaConf.register_new_resolver("config_hash", run_config_hash, replace=True)
load_all()
