"""End to end: a real Split-MNIST run, outputs on disk, determinism, the CLI, bad config values."""
import json
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch
from hydra.errors import ConfigCompositionException

from forgetbench.benchmarks.experiment import ConfigError, resolve_device, run
from tests.conftest import REPO, TINY, compose_cfg


@pytest.fixture(scope="module")
def naive_run(mnist_root, tmp_path_factory):
    """Split-MNIST class-IL, naive, the full real data (a few seconds on 2 CPU cores)."""
    out = tmp_path_factory.mktemp("runs") / "sweep" / "naive"
    cfg = compose_cfg(["strategy=naive", "progress=false", "device=cpu"])
    return run(cfg, out), out


def test_naive_forgets_catastrophically_in_class_il(naive_run):
    record, _ = naive_run
    R = np.array(record["accuracy_matrix"])
    assert np.diag(R[1:]).min() > 0.9  # each experience is learned ...
    assert R[-1, :-1].max() < 0.05  # ... and forgotten once the next ones are trained
    assert 0.15 < record["metrics"]["acc"] < 0.25
    assert record["metrics"]["forgetting"] > 0.85


def test_run_writes_record_and_csvs(naive_run):
    record, out = naive_run
    saved = json.loads((out / "record.json").read_text())
    assert saved["status"] == "ok" and saved["accuracy_matrix"] == pytest.approx(record["accuracy_matrix"])
    for key in ("config", "seed", "device", "versions", "git_commit", "timings", "metrics", "stream_info"):
        assert key in saved
    assert saved["config"]["strategy"]["name"] == "naive" and saved["versions"]["torch"] == torch.__version__
    assert len(saved["stream_info"]["class_order"]) == 10
    wide = pd.read_csv(out / "accuracy_matrix.csv", index_col="after")
    np.testing.assert_allclose(wide.to_numpy(), record["accuracy_matrix"], atol=1e-6)
    long = pd.read_csv(out / "accuracy.csv")
    assert len(long) == 6 * 5 and set(long.trained_up_to) == set(range(-1, 5))
    runs = pd.read_csv(out.parent / "runs.csv")
    assert runs.loc[0, "status"] == "ok" and runs.loc[0, "acc"] == pytest.approx(record["metrics"]["acc"])
    assert runs.loc[0, "cfg.strategy.name"] == "naive"
    assert not list(out.glob(".*.tmp"))  # atomic writes leave no temp files
    assert (out / "record.json").stat().st_mode & 0o044 == 0o044 or os.umask(os.umask(0)) & 0o044


def test_same_seed_same_matrix_on_cpu(mnist_root, tmp_path):
    overrides = ["strategy=replay", "strategy.mem_size=50", "seed=3", *TINY]
    a = run(compose_cfg(overrides), tmp_path / "a")["accuracy_matrix"]
    b = run(compose_cfg(overrides), tmp_path / "b")["accuracy_matrix"]
    c = run(compose_cfg([*overrides, "seed=4"]), tmp_path / "c")["accuracy_matrix"]
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


def test_fast_loader_matches_avalanche_loader(mnist_root, tmp_path):
    """Evaluation through the tensor path and through Avalanche's per-sample loader agree."""
    from forgetbench.benchmarks.experiment import _build, build_strategy, validate
    from forgetbench.benchmarks.protocol import MatrixRecorder

    cfg = compose_cfg(["strategy=naive", *TINY])
    stream = _build(cfg.stream)
    model = _build(cfg.model, input_shape=stream.input_shape, num_outputs=stream.num_outputs)
    results = []
    for fast in (True, False):  # False: Avalanche's own DataLoader
        recorder = MatrixRecorder(stream.num_experiences, progress=False)
        strategy = build_strategy(cfg, validate(cfg), model, stream, torch.device("cpu"), [recorder])
        strategy.fast_data = fast
        strategy.eval(stream.benchmark().test_stream)
        results.append(recorder.results)
    assert results[0].keys() == results[1].keys()
    for j in results[0]:
        assert results[0][j] == pytest.approx(results[1][j], abs=1e-6)


def test_runs_use_one_cpu_thread_by_default(mnist_root, tmp_path):
    """Two busy-waiting threads on a shared 2-core machine made runs 3-30x slower (README, CPU threads)."""
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        record = run(compose_cfg([o for o in TINY if not o.startswith("threads=")]), tmp_path / "r")
        assert torch.get_num_threads() == 1 and record["device"].startswith("cpu (1 threads)")
        run(compose_cfg([*TINY, "threads=null"]), tmp_path / "s")  # null: torch's default, left alone
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_failed_run_is_recorded_and_raised(mnist_root, tmp_path):
    cfg = compose_cfg(["strategy=naive", *TINY, "stream.n_experiences=3"])  # 10 classes into 3: invalid
    with pytest.raises(ValueError, match="cannot be split"):
        run(cfg, tmp_path / "failed")
    saved = json.loads((tmp_path / "failed" / "record.json").read_text())
    assert saved["status"] == "failed" and "cannot be split" in saved["error"]
    assert pd.read_csv(tmp_path / "runs.csv").loc[0, "status"] == "failed"


@pytest.mark.parametrize("override,pattern", [
    ("scenario=online", r"unknown scenario 'online'; choose one of \['class', 'task', 'domain'\]"),
    ("device=tpu", "unknown device 'tpu'; choose auto, cpu, cuda or cuda:N"),
])
def test_bad_values_name_the_choices(override, pattern, tmp_path):
    with pytest.raises(ConfigError, match=pattern):
        run(compose_cfg([*TINY, override]), tmp_path / "run")
    saved = json.loads((tmp_path / "run" / "record.json").read_text())
    assert saved["status"] == "failed" and saved["error"].startswith("ConfigError")


def test_unknown_config_group_option_lists_the_choices():
    with pytest.raises(ConfigCompositionException) as info:
        compose_cfg(["strategy=foo"])
    assert "naive" in str(info.value) and "replay" in str(info.value)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error raised without CUDA")
def test_cuda_without_cuda_is_a_clear_error():
    with pytest.raises(ConfigError, match="CUDA is not available.*device=cpu or device=auto"):
        resolve_device("cuda")


def test_auto_device_picks_what_is_there():
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")


def _cli(*args, cwd=REPO, **env):
    return subprocess.run([sys.executable, "-m", "forgetbench.cli", *args], cwd=cwd, capture_output=True, text=True,
                          env={**os.environ, **env}, timeout=300)


def test_cli_prints_the_resolved_config():
    out = _cli("--cfg", "job", "stream=permuted_mnist")
    assert out.returncode == 0, out.stderr
    assert "name: permuted_mnist" in out.stdout and "kind: permuted" in out.stdout


def test_cli_runs_a_sweep_into_one_directory(mnist_root, tmp_path):
    out = _cli("-m", "strategy=naive,ewc", *TINY, f"data.root={mnist_root}", f"results_dir={tmp_path}",
               "sweep_name=grid")
    assert out.returncode == 0, out.stderr[-3000:]
    assert "accuracy matrix" in out.stdout and "ACC" in out.stdout
    runs = pd.read_csv(tmp_path / "grid" / "runs.csv")
    assert sorted(runs.strategy) == ["ewc", "naive"] and (runs.status == "ok").all()
    assert len(list((tmp_path / "grid").glob("*/record.json"))) == 2


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("name", ["naive", "replay", "ewc"])
def test_cuda_run_copies_nothing_host_to_device_per_batch(name, mnist_root, tmp_path):
    """On CUDA the table lives on the GPU. Host-to-device copies (setting up the stream, the
    model, one shuffle order per epoch) must not grow with the number of batches."""
    from torch.profiler import ProfilerActivity, profile

    copies = {}
    for batch_size in (32, 8):  # 160 vs 640 training batches
        cfg = compose_cfg([f"strategy={name}", "scenario=task", "device=cuda", "progress=false",
                           "stream.max_train_per_exp=1024", f"batch_size={batch_size}"])
        with profile(activities=[ProfilerActivity.CUDA], acc_events=True) as prof:  # CUDA only: cheap
            record = run(cfg, tmp_path / f"{name}{batch_size}")
        assert record["device"].startswith("cuda")
        assert np.diag(np.array(record["accuracy_matrix"])[1:]).mean() > 0.9
        copies[batch_size] = sum("Memcpy HtoD" in e.name for e in prof.events())
    assert copies[8] - copies[32] < 16, f"{name}: host-to-device copies {copies} grow with the batches"


@pytest.mark.parametrize("experiment", sorted(p.stem for p in (REPO / "conf" / "experiment").glob("*.yaml")))
def test_every_experiment_file_composes_and_runs_tiny(experiment, mnist_root, tiny_root, tmp_path):
    preset = compose_cfg([f"experiment={experiment}"])
    overrides = [f"experiment={experiment}", *TINY, "iterations=2" if preset.iterations else "epochs=1"]
    cfg = compose_cfg(overrides)
    if cfg.stream.dataset.startswith("cifar"):  # CIFAR is not available offline: generated files
        cfg = compose_cfg([*overrides, "model.nf=4"], tiny_root)
    record = run(cfg, tmp_path / experiment)
    assert record["status"] == "ok" and len(record["accuracy_matrix"]) == cfg.stream.n_experiences + 1
