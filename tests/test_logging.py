"""Sinks: a real offline W&B run read back from its files; W&B failures never cost the CSVs;
the CSV schema; intransigence against a joint-training reference."""
import json

import numpy as np
import pandas as pd
import pytest

from forgetbench.benchmarks.experiment import run
from tests.conftest import TINY, compose_cfg
from tests.wandb_log import summarize_run

WANDB = ["logger=wandb", "logger.wandb.project=fb-test"]


@pytest.fixture
def offline(monkeypatch, tmp_path):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path / "config"))


def _wandb_file(run_dir):
    files = list(run_dir.glob("wandb/offline-run-*/run-*.wandb"))
    assert len(files) == 1, files
    return files[0]


def test_offline_wandb_run_holds_matrix_curves_and_summary(offline, mnist_root, tmp_path):
    out = tmp_path / "mysweep" / "run0"
    record = run(compose_cfg(["strategy=naive", *TINY, *WANDB]), out)
    path = _wandb_file(out)
    logged = summarize_run(path)
    assert logged["run"] is not None, f"no run record in {path} ({path.stat().st_size} bytes): {logged}"
    assert logged["run"].run_group == "mysweep" and logged["run"].job_type == "naive"
    assert logged["run"].display_name == "split_mnist__class__naive__0"
    assert logged["config"]["strategy"]["name"] == "naive"
    rows = [h for h in logged["history"] if "experience" in h]
    assert [h["experience"] for h in rows] == [1, 2, 3, 4, 5]
    acc = np.array(record["accuracy_matrix"])
    for h in rows:  # accuracy on every experience seen so far, after each experience
        i = h["experience"]
        assert sorted(k for k in h if k.startswith("acc/")) == sorted(f"acc/e{j}" for j in range(i))
        assert h["acc/e0"] == pytest.approx(acc[i, 0])
    assert rows[-1]["running/acc"] == pytest.approx(record["metrics"]["acc"])
    assert rows[-1]["running/forgetting"] == pytest.approx(record["metrics"]["forgetting"])
    assert logged["summary"]["acc"] == pytest.approx(record["metrics"]["acc"])
    final = next(h for h in logged["history"] if "accuracy_matrix" in h)
    assert final["accuracy_matrix"]["_type"] == "table-file"
    table = json.loads(next(out.glob("wandb/offline-run-*/files/media/table/accuracy_matrix_*.json")).read_text())
    assert table["columns"] == ["after", "e0", "e1", "e2", "e3", "e4"]
    np.testing.assert_allclose([r[1:] for r in table["data"]], acc, atol=1e-9)
    assert final["accuracy_heatmap"]["_type"] == "image-file"
    assert logged["exit_code"] == 0


def test_crashed_run_closes_wandb_with_failure_code(offline, mnist_root, tmp_path):
    out = tmp_path / "sweep" / "bad"
    with pytest.raises(ValueError):
        run(compose_cfg(["strategy=naive", *TINY, *WANDB, "stream.n_experiences=3"]), out)
    assert summarize_run(_wandb_file(out))["exit_code"] == 1
    assert json.loads((out / "record.json").read_text())["status"] == "failed"


@pytest.mark.parametrize("broken", ["import", "init", "log"])
def test_wandb_failure_warns_and_keeps_the_csvs(broken, offline, mnist_root, tmp_path, monkeypatch):
    import sys

    import wandb

    real_init = wandb.init
    if broken == "import":
        monkeypatch.setitem(sys.modules, "wandb", None)  # `import wandb` raises ImportError

    def failing_init(**kwargs):
        if broken == "init":
            raise RuntimeError("no network")
        run_ = real_init(**kwargs)
        monkeypatch.setattr(run_, "log", lambda *a, **k: (_ for _ in ()).throw(OSError("disk full")))
        return run_

    monkeypatch.setattr(wandb, "init", failing_init)
    out = tmp_path / "sweep" / "run"
    with pytest.warns(UserWarning, match="W&B logging is off") as caught:
        record = run(compose_cfg(["strategy=naive", *TINY, *WANDB]), out)
    assert len([w for w in caught if "W&B" in str(w.message)]) == 1  # warned once
    assert record["status"] == "ok"
    assert len(pd.read_csv(out / "accuracy.csv")) == 30
    assert pd.read_csv(out.parent / "runs.csv").loc[0, "status"] == "ok"


def test_csv_schema_round_trips_through_pandas(mnist_root, tmp_path):
    out = tmp_path / "sweep" / "run"
    record = run(compose_cfg(["strategy=ewc", *TINY]), out)
    long = pd.read_csv(out / "accuracy.csv")
    assert list(long.columns) == ["run_id", "trained_up_to", "evaluated_exp", "accuracy", "loss"]
    assert pd.api.types.is_string_dtype(long.run_id)
    assert [long[c].dtype for c in list(long.columns)[1:]] == [np.int64, np.int64, np.float64, np.float64]
    pivot = long.pivot(index="trained_up_to", columns="evaluated_exp", values="accuracy").to_numpy()
    np.testing.assert_allclose(pivot, record["accuracy_matrix"], atol=1e-6)
    runs = pd.read_csv(out.parent / "runs.csv")
    for column in ("run_id", "status", "stream", "scenario", "strategy", "seed", "acc", "bwt", "fwt", "forgetting",
                   "intransigence", "learning_acc", "train_seconds", "eval_seconds", "total_seconds", "git_commit",
                   "cfg.strategy.ewc_lambda", "cfg.optimizer.lr"):
        assert column in runs.columns, column
    assert runs.loc[0, "cfg.strategy.ewc_lambda"] == 1000.0


def test_intransigence_uses_a_matching_joint_run(mnist_root, tmp_path):
    common = [*TINY, f"results_dir={tmp_path}"]
    naive_alone = run(compose_cfg(["strategy=naive", *common]), tmp_path / "s" / "naive0")
    assert np.isnan(naive_alone["metrics"]["intransigence"] or np.nan)  # no reference yet: missing, not faked
    joint = run(compose_cfg(["strategy=joint", *common]), tmp_path / "s" / "joint")
    other_seed = run(compose_cfg(["strategy=naive", "seed=1", *common]), tmp_path / "s" / "naive1")
    assert other_seed["intransigence_reference"] is None  # the joint run has seed 0
    naive = run(compose_cfg(["strategy=naive", *common]), tmp_path / "s" / "naive")
    learned = np.diag(np.array(naive["accuracy_matrix"])[1:])
    expected = np.mean(np.array(joint["accuracy_matrix"][-1]) - learned)
    assert naive["metrics"]["intransigence"] == pytest.approx(expected)
    assert naive["intransigence_reference"] == str(tmp_path / "s" / "joint")
