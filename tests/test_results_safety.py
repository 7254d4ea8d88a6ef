"""Issue #12: no wrong result recorded as ok, no finished result lost. Each test provokes the fault
for real: a full disk at the OS boundary (os.replace / os.fsync raising ENOSPC), SIGKILL, SIGINT,
two sweeps racing into one directory, user errors and CUDA out of memory."""
from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

from forgetbench.benchmarks import records, sweep
from forgetbench.benchmarks.experiment import run
from tests.conftest import DATA, TINY, compose_cfg

CLI_TINY = [*TINY, f"data.root={DATA}"]


def enospc(path) -> OSError:
    return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))


def command(args, pre: str = "") -> list[str]:
    """``forgetbench ARGS``; with ``pre``: the same entry point after the Python lines ``pre`` (which
    patch something at the OS boundary, or make a step slow to interrupt it)."""
    if not pre:
        return [sys.executable, "-m", "forgetbench.cli", *args]
    code = textwrap.dedent(pre) + "\nfrom forgetbench.cli import main\nmain()\n"
    return [sys.executable, "-c", code, *args]


def env(**extra) -> dict:
    return {**os.environ, "FORGETBENCH_DATA": str(DATA), "WANDB_MODE": "offline", **extra}


def forgetbench(*args, cwd, pre: str = "", timeout: int = 300, **extra_env) -> subprocess.CompletedProcess:
    return subprocess.run(command(args, pre), cwd=cwd, env=env(**extra_env), capture_output=True, text=True,
                          timeout=timeout)


def interruptible() -> None:
    """Ctrl-C raises KeyboardInterrupt in this process, even where the test run was started with SIGINT
    ignored (a background job of a non-interactive shell, nohup): Python leaves an ignored SIGINT ignored."""
    signal.signal(signal.SIGINT, signal.default_int_handler)


class Running:
    """A ``forgetbench`` subprocess whose stdout and stderr are read as they come (for SIGINT)."""

    def __init__(self, args, cwd, pre: str = "", **extra_env):
        self.proc = subprocess.Popen(command(args, pre), cwd=cwd, env=env(**extra_env), stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, preexec_fn=interruptible)
        self.chunks = {"stdout": [], "stderr": []}
        self.readers = [threading.Thread(target=self._read, args=(name,), daemon=True) for name in self.chunks]
        for reader in self.readers:
            reader.start()

    def _read(self, name):
        pipe = getattr(self.proc, name)
        for chunk in iter(lambda: pipe.read1(65536), b""):
            self.chunks[name].append(chunk)

    def text(self, name) -> str:
        return b"".join(self.chunks[name]).decode(errors="replace")

    def wait_for(self, name: str, needle: str, timeout: float = 240) -> None:
        deadline = time.monotonic() + timeout
        while needle not in self.text(name):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.proc.kill()
                pytest.fail(f"never saw {needle!r}:\n{self.text('stdout')[-3000:]}\n{self.text('stderr')[-3000:]}")
            time.sleep(0.02)

    def finish(self, timeout: float = 120) -> int:
        try:
            code = self.proc.wait(timeout)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
        for reader in self.readers:
            reader.join(10)
        return code


def message_lines(stderr: str) -> list[str]:
    """stderr without the progress bars (tqdm redraws them with \\r)."""
    return [line for line in (part.strip() for part in stderr.splitlines())
            if line and not line.startswith("train exp")]


def run_dirs(sweep_dir: Path) -> dict[str, dict]:
    """Run dir name without its config hash (checked against the record's config) -> record."""
    out = {}
    for path in sorted(sweep_dir.glob("*/record.json")):
        record = json.loads(path.read_text())
        name, digest = path.parent.name.rsplit("__", 1)
        assert digest == sweep.config_hash(record["config"]), path
        out[name] = record
    return out


def full_disk_under(monkeypatch, folder: Path, times: int | None = None) -> list:
    """From now on renames into ``folder`` fail with ENOSPC (``times``: only that many); returns the failures."""
    real, failures = os.replace, []

    def replace(src, dst, *args, **kwargs):
        if Path(dst).resolve().is_relative_to(folder.resolve()) and (times is None or len(failures) < times):
            failures.append(dst)
            raise enospc(dst)
        return real(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "replace", replace)
    return failures


def full_disk_once_training_ends(monkeypatch, folder: Path) -> None:
    """The disk under ``folder`` fills while the run trains: the protocol runs, then renames there fail."""
    import forgetbench.benchmarks.protocol as protocol

    real = protocol.run_protocol

    def run_protocol(*args, **kwargs):
        result = real(*args, **kwargs)
        full_disk_under(monkeypatch, folder)
        return result

    monkeypatch.setattr(protocol, "run_protocol", run_protocol)


# ----------------------------------------------------------------------------------------- 1. the final write

@pytest.fixture
def no_retry_wait(monkeypatch):
    monkeypatch.setattr(records, "RETRY_DELAYS", (0, 0))


def test_finished_run_on_a_full_disk_goes_to_the_fallback_folder(tiny_cfg, tmp_path, monkeypatch, capsys,
                                                                 no_retry_wait):
    monkeypatch.delenv(records.FALLBACK_ENV, raising=False)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    out = tmp_path / "grid" / "0__run"
    full_disk_once_training_ends(monkeypatch, tmp_path / "grid")
    with pytest.raises(records.RecordNotSaved) as info:
        run(tiny_cfg(), out)
    error = info.value
    assert error.errno is None and error.error.errno == errno.ENOSPC
    saved = tmp_path / "state" / "forgetbench" / "unsaved" / "grid__0__run"
    assert error.saved_to == saved and str(saved) in str(error) and "No space left" in str(error)
    kept = json.loads((saved / "record.json").read_text())
    assert kept["status"] == "ok" and kept["intended_dir"] == str(out)
    assert kept["accuracy_matrix"] == pytest.approx(error.record["accuracy_matrix"])
    wide = pd.read_csv(saved / "accuracy_matrix.csv", index_col="after")
    assert wide.to_numpy() == pytest.approx(error.record["accuracy_matrix"], abs=1e-6)
    assert "accuracy matrix" in capsys.readouterr().out  # the summary was printed before the write
    assert not (out / "record.json").exists() and not list(out.glob(".*.tmp"))  # nothing half-written


def test_fallback_to_the_temp_dir_when_the_state_dir_fails_too(tiny_cfg, tmp_path, monkeypatch, no_retry_wait):
    monkeypatch.setenv(records.FALLBACK_ENV, str(tmp_path / "state"))
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    full_disk_under(monkeypatch, tmp_path / "grid")
    full_disk_under(monkeypatch, tmp_path / "state")  # the fallback folder is full as well
    with pytest.raises(records.RecordNotSaved) as info:
        run(tiny_cfg(), tmp_path / "grid" / "run")
    assert info.value.saved_to.parent == tmp_path / "tmp" / f"forgetbench-unsaved-{os.getuid()}"
    assert json.loads((info.value.saved_to / "record.json").read_text())["status"] == "ok"


def test_a_failed_write_is_retried(tiny_cfg, tmp_path, monkeypatch, no_retry_wait):
    failures = full_disk_under(monkeypatch, tmp_path / "grid", times=1)
    record = run(tiny_cfg(), tmp_path / "grid" / "run")
    assert len(failures) == 1
    assert json.loads((tmp_path / "grid" / "run" / "record.json").read_text())["accuracy_matrix"] == \
        pytest.approx(record["accuracy_matrix"])


def test_sweep_says_where_an_unwritable_record_went(tmp_path, mnist_root):
    """A real sweep whose second run meets a full disk: its line names the fallback folder, which
    holds the matrix; the sweep exits 1 and lists it; the first run is untouched."""
    pre = """
        import errno, os
        from forgetbench.benchmarks import records
        records.RETRY_DELAYS = (0, 0)
        real = os.replace
        def replace(src, dst, *args, **kwargs):
            if "/1__" in str(dst):
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(dst))
            return real(src, dst, *args, **kwargs)
        os.replace = replace
    """
    result = forgetbench("-m", "strategy=naive,ewc", *CLI_TINY, f"results_dir={tmp_path}", "sweep_name=grid",
                         pre=pre, cwd=tmp_path, FORGETBENCH_UNSAVED_DIR=str(tmp_path / "unsaved"))
    assert result.returncode == 1, result.stderr
    [saved] = (tmp_path / "unsaved").glob("grid__1__split_mnist__class__ewc__s0__*")
    run_dir = saved.name.split("__", 1)[1]
    assert f"[run 2/2] split_mnist__class__ewc__s0: the run finished, but its record could " \
           f"not be written to {tmp_path / 'grid' / run_dir}" in result.stderr
    assert f"saved to {saved} instead" in result.stderr and f"unsaved: {saved / 'record.json'}" in result.stderr
    assert json.loads((saved / "record.json").read_text())["status"] == "ok"
    assert result.stdout.count("accuracy matrix") == 2
    assert list(run_dirs(tmp_path / "grid")) == ["0__split_mnist__class__naive__s0"]
    assert list(pd.read_csv(tmp_path / "grid" / "runs.csv").strategy) == ["naive"]


# ----------------------------------------------------------------------------------------- 2. runs.csv

def runs_command() -> list[str]:
    script = Path(sys.executable).with_name("forgetbench-runs")
    return [str(script)] if script.exists() else [sys.executable, "-m", "forgetbench.runs"]


def test_a_record_without_a_row_is_in_runs_csv_after_a_rebuild(tiny_cfg, tmp_path):
    """As after a SIGKILL between the record's rename and the row: the rebuild command and the next
    run both derive runs.csv from the records."""
    grid = tmp_path / "grid"
    run(tiny_cfg("seed=0"), grid / "0__a")
    shutil.copytree(grid / "0__a", grid / "1__b")  # a record written by hand, its row never appended
    record = json.loads((grid / "1__b" / "record.json").read_text())
    record["config"]["seed"], record["seed"], record["run_id"] = 7, 7, "1__b"
    (grid / "1__b" / "record.json").write_text(json.dumps(record))
    assert len(pd.read_csv(grid / "runs.csv")) == 1

    out = subprocess.run([*runs_command(), str(grid)], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert f"wrote {grid / 'runs.csv'} (2 run(s))" in out.stdout
    assert sorted(pd.read_csv(grid / "runs.csv").seed) == [0, 7]

    (grid / "runs.csv").unlink()
    run(tiny_cfg("seed=1"), grid / "2__c")
    runs = pd.read_csv(grid / "runs.csv")
    assert sorted(runs.seed) == [0, 1, 7] and list(runs.run_id) == ["0__a", "1__b", "2__c"]


def test_sigkill_after_the_record_write_loses_no_row(tmp_path, mnist_root):
    """A real sweep SIGKILLed right after its second record.json is renamed into place: the record
    is whole, and the resumed sweep skips the run and shows it in runs.csv."""
    pre = """
        import os, signal
        from forgetbench.benchmarks import records
        real = records.write_json
        def write_json(path, record):
            real(path, record)
            if "/1__" in str(path) and record.get("status") == "ok":
                os.kill(os.getpid(), signal.SIGKILL)
        records.write_json = write_json
    """
    args = ["-m", "strategy=naive,ewc", *CLI_TINY, f"results_dir={tmp_path}", "sweep_name=grid"]
    killed = forgetbench(*args, pre=pre, cwd=tmp_path)
    assert killed.returncode == -signal.SIGKILL
    grid = tmp_path / "grid"
    assert [r["status"] for r in run_dirs(grid).values()] == ["ok", "ok"]
    assert list(pd.read_csv(grid / "runs.csv").strategy) == ["naive"]  # the kill came before the view's update

    resumed = forgetbench(*args, cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert resumed.stdout.count("skipped, already finished") == 2
    runs = pd.read_csv(grid / "runs.csv")
    assert list(runs.strategy) == ["naive", "ewc"] and (runs.status == "ok").all()


def test_an_interrupted_run_leaves_no_stale_row(tiny_cfg, tmp_path, monkeypatch):
    import forgetbench.benchmarks.protocol as protocol

    real = protocol.run_protocol
    monkeypatch.setattr(protocol, "run_protocol", lambda *a, **k: (_ for _ in ()).throw(KeyboardInterrupt()))
    with pytest.raises(KeyboardInterrupt):
        run(tiny_cfg(), tmp_path / "grid" / "0__first")
    runs = pd.read_csv(tmp_path / "grid" / "runs.csv")
    assert list(runs.status) == ["interrupted"]
    monkeypatch.setattr(protocol, "run_protocol", lambda *a, **k: (_ for _ in ()).throw(ValueError("bad")))
    with pytest.raises(ValueError):
        run(tiny_cfg(), tmp_path / "grid" / "1__second")
    assert list(pd.read_csv(tmp_path / "grid" / "runs.csv").status) == ["failed"]  # one row per config: the newest

    monkeypatch.setattr(protocol, "run_protocol", real)
    run(tiny_cfg(), tmp_path / "grid" / "2__third")
    runs = pd.read_csv(tmp_path / "grid" / "runs.csv")
    assert list(runs.status) == ["ok"] and list(runs.run_id) == ["2__third"]
    assert "acc" in runs.columns and runs.columns[0] == "run_id"
    run(tiny_cfg("seed=1"), tmp_path / "grid" / "3__other")
    assert list(pd.read_csv(tmp_path / "grid" / "runs.csv").run_id) == ["2__third", "3__other"]


def test_runs_csv_is_never_half_written(tiny_cfg, tmp_path, monkeypatch, capsys):
    """The disk fills while runs.csv is written (fsync of its data fails, or the rename does): the
    old runs.csv stays whole and readable, no temp file is left, the run's record is safe."""
    grid = tmp_path / "grid"
    run(tiny_cfg("seed=0"), grid / "0__a")
    before = (grid / "runs.csv").read_text()

    with monkeypatch.context() as patch:
        calls = []

        def fsync(fd):
            calls.append(fd)
            raise enospc("runs.csv")

        patch.setattr(os, "fsync", fsync)
        with pytest.raises(OSError, match="No space left"):
            records.rebuild_runs_csv(grid)
        assert calls
    assert (grid / "runs.csv").read_text() == before
    assert not list(grid.glob(".*.tmp"))

    real_replace = os.replace
    monkeypatch.setattr(os, "replace", lambda src, dst: (_ for _ in ()).throw(enospc(dst))
                        if Path(dst).name == "runs.csv" else real_replace(src, dst))
    capsys.readouterr()
    record = run(tiny_cfg("seed=1"), grid / "1__b")  # the record is written, the view is not: a warning
    assert f"could not update {grid / 'runs.csv'}" in capsys.readouterr().err
    assert json.loads((grid / "1__b" / "record.json").read_text())["accuracy_matrix"] == \
        pytest.approx(record["accuracy_matrix"])
    assert (grid / "runs.csv").read_text() == before and not list(grid.glob(".*.tmp"))
    assert len(pd.read_csv(grid / "runs.csv")) == 1
    monkeypatch.setattr(os, "replace", real_replace)
    assert records.rebuild_runs_csv(grid)[1] == 2


# ----------------------------------------------------------------------------------------- 3. claims

def test_two_concurrent_sweeps_compute_each_run_once(tmp_path, mnist_root):
    args = ["-m", "strategy=naive,ewc", "seed=0,1", *CLI_TINY, f"results_dir={tmp_path}", "sweep_name=same"]
    procs = [subprocess.Popen(command(args), cwd=tmp_path, env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for _ in range(2)]
    outputs = []
    try:
        for proc in procs:
            outputs.append(proc.communicate(timeout=400))
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
    for proc, (out, err) in zip(procs, outputs):
        assert proc.returncode == 0, err
    records_ = run_dirs(tmp_path / "same")
    keys = [sweep.config_key(r["config"]) for r in records_.values()]
    assert len(records_) == 4 and len(set(keys)) == 4 and all(r["status"] == "ok" for r in records_.values())
    computed = sum(line.startswith("[run ") and line.count(" ") == 2 for out, _ in outputs for line in out.splitlines())
    skipped = sum(out.count(": skipped, ") for out, _ in outputs)
    assert (computed, skipped) == (4, 4), [out for out, _ in outputs]
    assert len(pd.read_csv(tmp_path / "same" / "runs.csv")) == 4
    assert not list((tmp_path / "same" / sweep.CLAIMS).iterdir())  # every claim released


@pytest.fixture
def sleeper():
    """A live process that is not ours: the holder of a claim."""
    proc = subprocess.Popen(["sleep", "300"])
    yield proc
    proc.kill()
    proc.wait()


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def write_claim(path: Path, host: str, pid: int, age: float = 0.0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"host": host, "pid": pid, "started_at": "2024-01-01T00:00:00+00:00", "token": "t"}))
    if age:
        os.utime(path, (time.time() - age, time.time() - age))


def test_claims_take_over_stale_ones_and_respect_live_ones(tmp_path, sleeper):
    cfg = compose_cfg([*TINY, "seed=5"])
    path = sweep.claim_path(tmp_path, cfg)
    host = socket.gethostname()

    write_claim(path, host, dead_pid())  # same host, process gone
    with sweep.claim(cfg, tmp_path, tmp_path / "0__x") as mine:
        assert mine.took_over["pid"] != os.getpid()
        assert json.loads(path.read_text())["pid"] == os.getpid()
    assert not path.exists()  # released

    write_claim(path, "elsewhere", 1, age=sweep.CLAIM_STALE_SECONDS + 60)  # heartbeat stopped long ago
    with sweep.claim(cfg, tmp_path) as mine:
        assert mine.took_over["host"] == "elsewhere"

    write_claim(path, "elsewhere", 1)  # another host, heartbeat fresh: alive as far as we can tell
    with pytest.raises(sweep.Held, match="being run by pid 1 on elsewhere"):
        sweep.claim(cfg, tmp_path)

    write_claim(path, host, sleeper.pid)  # this host, process alive
    with pytest.raises(sweep.Held) as info:
        sweep.claim(cfg, tmp_path)
    assert info.value.owner["pid"] == sleeper.pid and str(path) in str(info.value)

    path.write_text("")  # a claim being written right now
    with pytest.raises(sweep.Held, match="writing its claim"):
        sweep.claim(cfg, tmp_path)

    path.unlink()
    first = sweep.claim(cfg, tmp_path)
    write_claim(path, host, dead_pid())  # first's claim replaced (taken over) by someone else ...
    first.release()
    assert path.exists()  # ... so releasing first leaves it alone


def test_a_sweep_takes_over_a_stale_claim_and_leaves_a_held_run(tmp_path, sleeper, mnist_root):
    host = socket.gethostname()
    stale = sweep.claim_path(tmp_path / "grid", compose_cfg([*TINY, "strategy=naive"]))
    held = sweep.claim_path(tmp_path / "grid", compose_cfg([*TINY, "strategy=ewc"]))
    write_claim(stale, host, dead_pid())
    write_claim(held, host, sleeper.pid)
    result = forgetbench("-m", "strategy=naive,ewc", *CLI_TINY, f"results_dir={tmp_path}", "sweep_name=grid",
                         cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "[run 1/2] split_mnist__class__naive__s0: taking over from a stale claim (pid" in result.stdout
    assert f"[run 2/2] split_mnist__class__ewc__s0: skipped, being run by pid {sleeper.pid} on {host}" in result.stdout
    assert "1 held, 1 ok" in result.stdout
    assert list(run_dirs(tmp_path / "grid")) == ["0__split_mnist__class__naive__s0"]
    assert not stale.exists() and json.loads(held.read_text())["pid"] == sleeper.pid


# ----------------------------------------------------------------------------------------- 4. Ctrl-C

def test_ctrl_c_mid_run_records_interrupted_and_exits_130(tmp_path, mnist_root):
    args = ["-m", "strategy=naive,ewc", *CLI_TINY, "progress=true", "epochs=100", f"results_dir={tmp_path}",
            "sweep_name=grid"]
    proc = Running(args, cwd=tmp_path)
    proc.wait_for("stderr", "train exp 1/5")  # training has started
    proc.proc.send_signal(signal.SIGINT)
    assert proc.finish() == 130
    stderr = proc.text("stderr")
    [path] = (tmp_path / "grid").glob("0__split_mnist__class__naive__s0__*/record.json")
    assert message_lines(stderr) == [f"forgetbench: interrupted (Ctrl-C); {path} says status: interrupted; "
                                     "run the same command again to resume the sweep"], stderr
    assert "Traceback" not in stderr
    record = json.loads(path.read_text())
    assert record["status"] == "interrupted" and record["error"].startswith("KeyboardInterrupt")
    assert list(run_dirs(tmp_path / "grid")) == ["0__split_mnist__class__naive__s0"]  # the sweep stopped
    assert list(pd.read_csv(tmp_path / "grid" / "runs.csv").status) == ["interrupted"]
    assert not list((tmp_path / "grid" / sweep.CLAIMS).iterdir())  # its claim released

    resumed = forgetbench(*args, "progress=false", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    runs = pd.read_csv(tmp_path / "grid" / "runs.csv")
    assert list(runs.strategy) == ["naive", "ewc"] and (runs.status == "ok").all()  # no stale interrupted row


def test_ctrl_c_at_start_up_records_interrupted(tmp_path, mnist_root):
    """SIGINT while the run starts up (looking up the git commit, before any training)."""
    pre = """
        import time
        from forgetbench.benchmarks import records
        def slow_git_commit(cwd=None):
            print("looking up the commit", flush=True)
            time.sleep(120)
        records.git_commit = slow_git_commit
    """
    proc = Running([*CLI_TINY, f"results_dir={tmp_path}"], cwd=tmp_path, pre=pre)
    proc.wait_for("stdout", "looking up the commit")
    proc.proc.send_signal(signal.SIGINT)
    assert proc.finish() == 130
    [path] = tmp_path.glob("*/*/record.json")
    assert message_lines(proc.text("stderr")) == [f"forgetbench: interrupted (Ctrl-C); {path} says status: interrupted"]
    record = json.loads(path.read_text())
    assert record["status"] == "interrupted" and record["git_commit"] is None


def test_ctrl_c_during_the_final_write_finishes_the_write(tiny_cfg, tmp_path, monkeypatch):
    real = os.replace

    def replace(src, dst, *args, **kwargs):
        if Path(dst).name == "record.json":
            os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C lands in the middle of the write
        return real(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "replace", replace)
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)  # see interruptible()
    try:
        with pytest.raises(KeyboardInterrupt) as info:
            run(tiny_cfg(), tmp_path / "grid" / "run")
    finally:
        signal.signal(signal.SIGINT, previous)
    saved = json.loads((tmp_path / "grid" / "run" / "record.json").read_text())
    assert saved["status"] == "ok" and len(saved["accuracy_matrix"]) == 6
    assert info.value.record_path == tmp_path / "grid" / "run" / "record.json"
    assert list(pd.read_csv(tmp_path / "grid" / "runs.csv").status) == ["ok"]


# ----------------------------------------------------------------------------------------- 6. errors a person reads

OOM = """
    import torch
    import forgetbench.benchmarks.protocol as protocol
    def run_protocol(*args, **kwargs):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")
    protocol.run_protocol = run_protocol
"""
BUG = """
    import forgetbench.benchmarks.protocol as protocol
    def run_protocol(*args, **kwargs):
        raise RuntimeError("a bug in the protocol")
    protocol.run_protocol = run_protocol
"""


@pytest.mark.parametrize("case,override,pre,needles", [
    ("config", "scenario=online", "", ["unknown scenario 'online'; choose one of"]),
    ("data", "data.root={tmp}", "", ["files not found under data root", "data.root=/path"]),
    ("cuda", "device=cuda", "", ["CUDA is not available", "device=cpu"]),
    ("oom", "batch_size=16", OOM, ["out of GPU memory", "batch_size (now 16)", "eval_batch_size (now 1000)",
                                   "smaller model than model=mlp"]),
], ids=["config", "data", "cuda", "oom"])
def test_user_errors_print_one_message_and_exit_2(case, override, pre, needles, tmp_path, mnist_root):
    if case == "cuda" and torch.cuda.is_available():
        pytest.skip("checks the error raised without CUDA")
    result = forgetbench(*CLI_TINY, override.format(tmp=tmp_path / "empty"), f"results_dir={tmp_path}", pre=pre,
                         cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr and result.stderr.startswith("forgetbench: error: ")
    for needle in needles:
        assert needle in result.stderr
    [path] = tmp_path.glob("*/*/record.json")
    assert f"recorded as failed in {path}" in result.stderr
    assert json.loads(path.read_text())["status"] == "failed"


def test_debug_switch_shows_the_traceback(tmp_path):
    result = forgetbench(*CLI_TINY, "scenario=online", f"results_dir={tmp_path}", cwd=tmp_path, FORGETBENCH_DEBUG="1")
    assert result.returncode == 1 and "Traceback" in result.stderr and "ConfigError" in result.stderr


def test_program_errors_keep_their_traceback(tmp_path, mnist_root):
    result = forgetbench(*CLI_TINY, f"results_dir={tmp_path}", pre=BUG, cwd=tmp_path)
    assert result.returncode == 1
    assert "Traceback" in result.stderr and "RuntimeError: a bug in the protocol" in result.stderr


def test_oom_in_a_sweep_names_the_fix(tmp_path, mnist_root):
    result = forgetbench("-m", "seed=0,1", *CLI_TINY, f"results_dir={tmp_path}", "sweep_name=grid", pre=OOM,
                         cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.count("FAILED with out of GPU memory") == 2 and "Traceback" not in result.stderr
