"""The sweep timing of the speed benchmark (scripts/bench_speed.py --sweep); never asserts times."""
import os

from forgetbench.benchmarks import speed
from tests.conftest import TINY


def test_sweep_table_reports_ratios_to_both_serial_baselines():
    times = {"serial": 80.0, "serial, threads=1": 120.0, "joblib, 2 jobs": 60.0}
    table = speed.format_sweep(times)
    cores = len(os.sched_getaffinity(0))
    assert "| 80.0 | 120.0 | 60.0 | 0.75x | 0.50x |" in table
    assert f"| {120.0 / cores / 80.0:.2f}x |" in table


def test_sweep_times_a_tiny_grid_three_ways(mnist_root):
    grid = ("strategy=naive", "seed=0,1", *TINY)
    times = speed.sweep(str(mnist_root), n_jobs=2, grid=grid)
    assert list(times) == ["serial", "serial, threads=1", "joblib, 2 jobs"]
    assert all(t > 0 for t in times.values())


def test_threads_table_reports_default_over_one_thread_per_machine_load():
    names = list(speed.THREAD_VARIANTS)
    times = {("idle", names[0]): 2.5, ("idle", names[1]): 3.2, ("idle", names[2]): 3.6,
             ("one core busy", names[0]): 11.9, ("one core busy", names[1]): 3.4, ("one core busy", names[2]): 3.9}
    table = speed.format_threads(times)
    assert "| idle | 2.50 | 3.20 | 3.60 | 0.78x |" in table
    assert "| one core busy | 11.90 | 3.40 | 3.90 | 3.50x |" in table
