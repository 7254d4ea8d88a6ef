"""Sinks: a real offline W&B run read back from its files; an unreachable W&B server costs one short
wait and the run is logged offline; W&B failures never cost the CSVs; the sink's logic against a fake
wandb; the CSV schema; intransigence against a joint-training reference."""
import json
import socket
import sys
import warnings

import numpy as np
import pandas as pd
import pytest

from forgetbench.benchmarks import wandb_sink
from forgetbench.benchmarks.experiment import run
from forgetbench.benchmarks.metrics import summarize
from forgetbench.benchmarks.wandb_sink import WandbSink
from tests.conftest import TINY, compose_cfg
from tests.wandb_log import summarize_run

WANDB = ["logger=wandb", "logger.wandb.project=fb-test"]


@pytest.fixture(autouse=True)
def fresh_process(monkeypatch):
    """Each test starts as a new process would: no earlier W&B failure has sent it offline."""
    monkeypatch.setattr(wandb_sink, "offline_since", None)


@pytest.fixture
def offline(monkeypatch, tmp_path):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.delenv("WANDB_INIT_TIMEOUT", raising=False)
    monkeypatch.delenv("WANDB_RUN_ID", raising=False)


def _wandb_file(run_dir):
    files = list(run_dir.glob("wandb/offline-run-*/run-*.wandb"))
    assert len(files) == 1, files
    return files[0]


def test_offline_wandb_run_holds_matrix_curves_and_summary(offline, mnist_root, tmp_path):
    out = tmp_path / "mysweep" / "run0"
    record = run(compose_cfg(["strategy=naive", *TINY, *WANDB]), out)
    # No waiting here: the sink's finish returned only once wandb-core had closed the run's file
    # (wandb.teardown() joins the service process), so the file is complete now or never.
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
    from forgetbench.benchmarks.protocol import DivergenceError

    with pytest.raises(DivergenceError):  # crashes mid-training, after the W&B run started
        run(compose_cfg(["strategy=naive", *TINY, *WANDB, "optimizer=sgd", "optimizer.lr=1e4",
                         "stream.max_train_per_exp=96"]), out)
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


def test_unreachable_server_costs_one_short_wait_then_runs_log_offline(offline, mnist_root, tmp_path, monkeypatch):
    with socket.socket() as closed:  # bound but not listening: connections to it are refused, nobody else can listen
        closed.bind(("127.0.0.1", 0))
        monkeypatch.setenv("WANDB_MODE", "online")
        monkeypatch.setenv("WANDB_BASE_URL", f"http://127.0.0.1:{closed.getsockname()[1]}")
        monkeypatch.setenv("WANDB_API_KEY", "x" * 40)  # well-formed, never checked: no login involved
        monkeypatch.setenv("WANDB_INIT_TIMEOUT", "1")
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            records = [run(compose_cfg([f"seed={seed}", "strategy=naive", *TINY, *WANDB]), tmp_path / "sweep" / str(seed))
                       for seed in (0, 1)]
    messages = [str(w.message) for w in caught if "W&B" in str(w.message)]
    assert len(messages) == 1, messages  # said once, for the first run; the second went offline without trying
    assert "wandb.init online failed" in messages[0] and "log offline" in messages[0] and "wandb sync" in messages[0]
    assert wandb_sink.offline_since is not None
    for seed, record in zip((0, 1), records):
        out = tmp_path / "sweep" / str(seed)
        assert record["status"] == "ok" and len(pd.read_csv(out / "accuracy.csv")) == 30
        assert list(out.glob("wandb/run-*")) == []  # the failed online attempt left nothing for `wandb sync` to trip on
        logged = summarize_run(_wandb_file(out))
        assert logged["exit_code"] == 0 and logged["summary"]["acc"] == pytest.approx(record["metrics"]["acc"])
        assert [h["experience"] for h in logged["history"] if "experience" in h] == [1, 2, 3, 4, 5]


class FakeRun:
    def __init__(self, events: list, kwargs: dict):
        self.events, self.kwargs = events, kwargs
        self.metrics, self.logged, self.summary = {}, [], {}

    def define_metric(self, name, step_metric=None):
        self.metrics[name] = step_metric

    def log(self, data):
        self.logged.append(data)

    def finish(self, exit_code=None):
        self.events.append(("finish", exit_code))


class FakeWandb:
    """Stands in for the wandb module: ``events`` lists init (mode, init_timeout, id), finish and teardown calls."""

    def __init__(self, fail_modes=()):
        self.events, self.runs, self.fail_modes = [], [], fail_modes

    def Settings(self, **kwargs):  # noqa: N802 - wandb's name
        return kwargs

    def init(self, **kwargs):
        self.events.append(("init", kwargs["mode"], kwargs["settings"]["init_timeout"], kwargs["id"]))
        if kwargs["mode"] in self.fail_modes:
            raise ConnectionError("connection refused\nsecond line")
        self.runs.append(FakeRun(self.events, kwargs))
        return self.runs[-1]

    def Table(self, columns, data):  # noqa: N802
        return {"table": columns, "data": data}

    def Image(self, figure):  # noqa: N802
        return {"image": figure}

    def teardown(self):
        self.events.append(("teardown",))


@pytest.fixture
def fake_wandb(monkeypatch):
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.delenv("WANDB_INIT_TIMEOUT", raising=False)
    monkeypatch.delenv("WANDB_RUN_ID", raising=False)

    def install(**kwargs) -> FakeWandb:
        fake = FakeWandb(**kwargs)
        monkeypatch.setitem(sys.modules, "wandb", fake)  # `import wandb` in the sink gets the fake
        return fake
    return install


def _sink(tmp_path, mode=None) -> WandbSink:
    return WandbSink(project="p", name="split__class__naive__0", group="sweep", job_type="naive", config={"seed": 0},
                     dir=str(tmp_path), mode=mode)


R = np.array([[0.1, 0.1, 0.1], [0.9, 0.2, 0.1], [0.5, 0.8, 0.1], [0.4, 0.6, 0.7]])


def test_sink_logs_rows_running_metrics_matrix_and_summary_then_waits_for_the_files(fake_wandb, tmp_path):
    fake = fake_wandb()
    sink = _sink(tmp_path, mode="offline")
    (run_,) = fake.runs
    assert run_.kwargs["group"] == "sweep" and run_.kwargs["job_type"] == "naive" and run_.kwargs["mode"] == "offline"
    assert run_.metrics == {"train/step": None, "train/*": "train/step", "experience": None, "acc/*": "experience",
                            "loss/*": "experience", "running/*": "experience"}
    sink.log_train_loss(7, 0.25)
    for i, row in enumerate(R):
        sink.log_row(i, row)
    assert run_.logged[0] == {"train/step": 7, "train/loss": 0.25}
    rows = run_.logged[1:]  # row 0 (before training) logs nothing
    assert [sorted(r) for r in rows] == [
        sorted(["experience", *[f"acc/e{j}" for j in range(i)], "running/acc", "running/bwt", "running/forgetting"])
        for i in (1, 2, 3)]
    assert [r["experience"] for r in rows] == [1, 2, 3] and rows[1]["acc/e1"] == 0.8
    final = summarize(R)
    assert rows[-1]["running/acc"] == pytest.approx(final["acc"])
    assert rows[-1]["running/forgetting"] == pytest.approx(final["forgetting"])

    timings = {"total_seconds": 3.0, "train_seconds_per_call": [1.0, 1.0, 1.0]}
    sink.finish({"run_id": "r0", "accuracy_matrix": R.tolist(), "metrics": final, "timings": timings})
    table = run_.logged[-1]["accuracy_matrix"]
    assert table["table"] == ["after", "e0", "e1", "e2"] and table["data"][2] == ["e1", 0.5, 0.8, 0.1]
    assert "image" in run_.logged[-1]["accuracy_heatmap"]
    assert run_.summary == {**final, "total_seconds": 3.0}  # list-valued timings stay out of the summary
    assert fake.events[-2:] == [("finish", 0), ("teardown",)]  # the files are complete when finish returns
    sink.log_row(1, R[1])
    sink.fail("late")
    assert fake.events[-1] == ("teardown",) and len(run_.logged) == 5  # finished: later calls do nothing


def test_sink_rows_out_of_order_log_no_running_metrics(fake_wandb, tmp_path):
    fake = fake_wandb()
    sink = _sink(tmp_path)
    sink.log_row(2, R[2])  # row 1 never came: the running metrics would be wrong, so none
    assert fake.runs[0].logged == [{"experience": 2, "acc/e0": 0.5, "acc/e1": 0.8}]


def test_sink_fail_records_the_error_with_exit_code_1(fake_wandb, tmp_path):
    fake = fake_wandb()
    sink = _sink(tmp_path)
    sink.fail("ValueError: bad config")
    assert fake.runs[0].summary == {"error": "ValueError: bad config"}
    assert fake.events[-2:] == [("finish", 1), ("teardown",)] and sink.run is None


def test_sink_log_failure_warns_once_and_closes_the_run(fake_wandb, tmp_path):
    fake = fake_wandb()
    sink = _sink(tmp_path)
    fake.runs[0].log = lambda data: (_ for _ in ()).throw(OSError("disk full"))
    with pytest.warns(UserWarning, match=r"W&B logging is off for this run \(log_row failed: OSError: disk full\)"):
        sink.log_row(1, R[1])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        sink.log_row(2, R[2])
        sink.finish({"run_id": "r0", "accuracy_matrix": R.tolist(), "metrics": {}, "timings": {}})
    assert fake.events[-2:] == [("finish", 1), ("teardown",)]


def test_online_init_failure_goes_offline_for_the_rest_of_the_process(fake_wandb, tmp_path):
    fake = fake_wandb(fail_modes=("online",))
    with pytest.warns(UserWarning, match="wandb.init online failed .ConnectionError: connection refused.; this run and "
                                         "the rest of this process log offline") as caught:
        first = _sink(tmp_path, mode="online")
    assert len(caught) == 1 and "second line" not in str(caught[0].message)
    (_, mode, timeout, id_), teardown, retry = fake.events
    assert (mode, timeout) == ("online", wandb_sink.ONLINE_INIT_TIMEOUT)  # short: the server answers or it does not
    assert teardown == ("teardown",)  # the service still holds the failed run's id
    assert retry == ("init", "offline", wandb_sink.OFFLINE_INIT_TIMEOUT, id_)  # the same run, offline
    assert first.run is fake.runs[0]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # said once
        second = _sink(tmp_path)  # WANDB_MODE unset: online by default, but this process is offline now
    assert fake.events[-1][:3] == ("init", "offline", wandb_sink.OFFLINE_INIT_TIMEOUT) and second.run is fake.runs[1]
    assert fake.events[-1][3] != id_  # a new run id (not the random module's, which every seed-0 run shares)


def test_init_timeout_comes_from_the_environment(fake_wandb, tmp_path, monkeypatch):
    fake = fake_wandb()
    monkeypatch.setenv("WANDB_INIT_TIMEOUT", "2.5")
    _sink(tmp_path)
    _sink(tmp_path, mode="offline")  # offline never waits less than OFFLINE_INIT_TIMEOUT
    assert [e[1:3] for e in fake.events if e[0] == "init"] == [(None, 2.5), ("offline", wandb_sink.OFFLINE_INIT_TIMEOUT)]


def test_offline_init_failure_turns_the_sink_off(fake_wandb, tmp_path):
    fake = fake_wandb(fail_modes=("offline",))
    with pytest.warns(UserWarning, match="W&B logging is off for this run .init failed: ConnectionError") as caught:
        sink = _sink(tmp_path, mode="offline")
    assert len(caught) == 1 and sink.run is None and wandb_sink.offline_since is None
    sink.log_row(1, R[1])
    sink.finish({})
    assert [e[0] for e in fake.events] == ["init"]  # nothing to finish or tear down


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
    assert runs.loc[0, "cfg.strategy.ewc_lambda"] == record["config"]["strategy"]["ewc_lambda"]


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
