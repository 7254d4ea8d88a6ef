"""Run records and the CSVs derived from them, written so that a finished result is never lost.

A run directory holds ``record.json`` (everything about the run), ``accuracy_matrix.csv``
(wide: one row per training stage) and ``accuracy.csv`` (long: one row per matrix cell).
The folder above it (a sweep directory) holds ``runs.csv``: a view of the ``record.json`` files
beside it, one summary row per config, rebuilt whole (never appended) by :func:`rebuild_runs_csv`.

Every file is written to a temporary file and renamed (:func:`atomic_write_text`). A run's files
that cannot be written where they belong (disk full, permissions) are retried, then written to a
fallback folder (:func:`fallback_dirs`), see :func:`save_run`.
"""
from __future__ import annotations

import contextlib
import csv
import datetime as dt
import errno
import fcntl
import io
import json
import math
import os
import platform
import signal
import subprocess
import sys
import tempfile
import threading
import time
from importlib import metadata
from pathlib import Path

import numpy as np

PACKAGES = ("torch", "torchvision", "avalanche-lib", "hydra-core", "pandas", "wandb", "numpy")
RETRY_DELAYS = (0.5, 2.0)  # seconds before the 2nd and 3rd attempt to write a run's files
FALLBACK_ENV = "FORGETBENCH_UNSAVED_DIR"  # overrides the first fallback folder


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` via a temp file in the same folder and a rename: readers see the
    old file or the whole new one, never a part (a failure leaves the old file and no temp file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", newline="") as f:
            umask = os.umask(0)
            os.umask(umask)
            os.fchmod(f.fileno(), 0o666 & ~umask)  # mkstemp makes 0600; give the file the usual permissions
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def interrupts_deferred():
    """Ctrl-C (SIGINT) inside the block waits until the block is done, then raises as usual:
    a write that has begun is finished. Only in the main thread (elsewhere: no effect)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received = []
    try:
        previous = signal.signal(signal.SIGINT, lambda signum, frame: received.append(signum))
    except ValueError:  # not the main interpreter
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if received:
            if callable(previous):
                previous(signal.SIGINT, None)  # the default handler raises KeyboardInterrupt
            elif previous == signal.SIG_DFL:
                os.kill(os.getpid(), signal.SIGINT)


def _jsonable(value):
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return _jsonable(value.tolist())
    if isinstance(value, (np.floating, float)):
        return None if math.isnan(value) else float(value)
    if isinstance(value, np.integer):
        return int(value)
    return value


def write_json(path: Path, record: dict) -> None:
    atomic_write_text(path, json.dumps(_jsonable(record), indent=2) + "\n")


def matrix_csv(matrix: np.ndarray) -> str:
    """Wide CSV: column ``after`` = training stage (``init``, ``e0``..), then one column per test experience."""
    buf = io.StringIO()
    writer = csv.writer(buf)
    T = matrix.shape[1]
    writer.writerow(["after"] + [f"e{j}" for j in range(T)])
    for i, row in enumerate(matrix):
        writer.writerow(["init" if i == 0 else f"e{i - 1}"] + ["" if np.isnan(v) else f"{v:.6f}" for v in row])
    return buf.getvalue()


def long_csv(run_id: str, accuracy: np.ndarray, loss: np.ndarray) -> str:
    """Long CSV: run_id, trained_up_to (-1 = untrained), evaluated_exp, accuracy, loss."""
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["run_id", "trained_up_to", "evaluated_exp", "accuracy", "loss"])
    for i in range(accuracy.shape[0]):
        if np.isnan(accuracy[i]).all():
            continue
        for j in range(accuracy.shape[1]):
            writer.writerow([run_id, i - 1, j, f"{accuracy[i, j]:.6f}", f"{loss[i, j]:.6f}"])
    return buf.getvalue()


# ---------------------------------------------------------------- a run's files, and where they go when they can't

class RecordNotSaved(OSError):
    """A finished run whose record could not be written to its run directory; ``saved_to`` is the
    folder that holds it instead (None: no folder took it, the record went to stderr as JSON)."""

    def __init__(self, record: dict, run_dir: Path, saved_to: Path | None, error: BaseException | None):
        self.record, self.run_dir, self.saved_to, self.error = record, Path(run_dir), saved_to, error
        where = (f"it was saved to {saved_to} instead (move that folder into {Path(run_dir).parent} to keep it "
                 "with its sweep)") if saved_to else "no folder could take it: the record was printed on stderr as JSON"
        super().__init__(f"the run finished, but its record could not be written to {run_dir} "
                         f"({error}); {where}")


def write_run_files(run_dir: Path, record: dict) -> None:
    """The matrix CSVs (finished runs), then ``record.json`` last: a run dir with a record has its CSVs."""
    run_dir = Path(run_dir)
    if record.get("status") == "ok":
        acc, loss = np.asarray(record["accuracy_matrix"], dtype=float), np.asarray(record["loss_matrix"], dtype=float)
        atomic_write_text(run_dir / "accuracy_matrix.csv", matrix_csv(acc))
        if record.get("task_masked_accuracy_matrix") is not None:
            atomic_write_text(run_dir / "task_masked_accuracy_matrix.csv",
                              matrix_csv(np.asarray(record["task_masked_accuracy_matrix"], dtype=float)))
        atomic_write_text(run_dir / "accuracy.csv", long_csv(record["run_id"], acc, loss))
    write_json(run_dir / "record.json", record)


def fallback_dirs() -> list[Path]:
    """Where a record goes when its run dir can't take it, in order: ``$FORGETBENCH_UNSAVED_DIR``,
    else ``$XDG_STATE_HOME/forgetbench/unsaved`` (default ``~/.local/state/forgetbench/unsaved``);
    then ``<system temp dir>/forgetbench-unsaved-<uid>``."""
    dirs = []
    if os.environ.get(FALLBACK_ENV):
        dirs.append(Path(os.environ[FALLBACK_ENV]))
    else:
        state = os.environ.get("XDG_STATE_HOME")
        with contextlib.suppress(RuntimeError, KeyError):
            state = state or str(Path.home() / ".local" / "state")
        if state:
            dirs.append(Path(state) / "forgetbench" / "unsaved")
    uid = os.getuid() if hasattr(os, "getuid") else os.getpid()
    dirs.append(Path(tempfile.gettempdir()) / f"forgetbench-unsaved-{uid}")
    return dirs


def save_run(run_dir: Path, record: dict) -> tuple[Path | None, OSError | None]:
    """Write a run's files into ``run_dir`` (retrying after :data:`RETRY_DELAYS`), else into the first
    of :func:`fallback_dirs` that takes them (with ``intended_dir`` added to the record), else print
    the record on stderr as JSON. Never raises OSError. Returns (the folder that holds the record,
    or None; the error that kept it out of ``run_dir``, or None)."""
    run_dir = Path(run_dir)
    error = None
    for delay in (*RETRY_DELAYS, None):
        try:
            write_run_files(run_dir, record)
            return run_dir, None
        except OSError as e:
            error = e
        if delay is not None:
            time.sleep(delay)
    copy = {**record, "intended_dir": str(run_dir)}
    name = f"{run_dir.parent.name}__{run_dir.name}"
    for base in fallback_dirs():
        folder = base / name
        if folder.exists():
            folder = base / f"{name}__{dt.datetime.now():%Y%m%d-%H%M%S}-{os.getpid()}"
        try:
            write_run_files(folder, copy)
            return folder, error
        except OSError:
            continue
    with contextlib.suppress(Exception):
        sys.stderr.write(f"forgetbench: could not write the record of {run_dir} anywhere; here it is:\n"
                         f"{json.dumps(_jsonable(copy))}\n")
        sys.stderr.flush()
    return None, error


# ---------------------------------------------------------------- runs.csv: a view of the records

ROW_KEYS = ("run_id", "status", "stream", "scenario", "strategy", "model", "seed")


def summary_row(record: dict, run_dir: Path) -> dict:
    """One ``runs.csv`` row: the record's identity, its scalar metrics and timings, device, commit,
    error, path, and every config key as ``cfg.<dotted key>``."""
    row = {k: record.get(k) for k in ROW_KEYS}
    metrics = {k: v for k, v in (record.get("metrics") or {}).items() if not isinstance(v, (list, dict))}
    timings = {k: v for k, v in (record.get("timings") or {}).items() if not isinstance(v, (list, dict))}
    row.update({**metrics, **timings, "device": record.get("device"), "git_commit": record.get("git_commit"),
                "error": record.get("error", ""), "path": str(run_dir)})
    row.update(flatten(record.get("config") or {}, "cfg."))
    return row


def _newest_first(item):
    path, record = item
    with contextlib.suppress(OSError):
        return record.get("finished_at") or record.get("started_at") or "", path.stat().st_mtime_ns
    return "", 0


def standing_records(items, group=None) -> list[tuple[Path, dict]]:
    """The record that stands for each config among ``items`` ((path, record) pairs; per ``group(path)``
    as well, if given): its newest ``ok`` record, or its newest record when none is ok. The one rule
    by which resume, ``runs.csv`` and the leaderboard pick among re-runs."""
    from forgetbench.benchmarks.sweep import config_key

    rank = lambda item: (item[1].get("status") == "ok", _newest_first(item))  # noqa: E731
    best: dict[tuple, tuple[Path, dict]] = {}
    for path, record in items:
        config = record.get("config")
        key = (group(path) if group else "", config_key(config if isinstance(config, dict) else {}))
        if key not in best or rank((path, record)) > rank(best[key]):
            best[key] = (path, record)
    return list(best.values())


def current_records(folder: Path) -> list[tuple[Path, dict]]:
    """:func:`standing_records` among ``folder/*/record.json``, in job order."""
    readable = ((path, read_record(path)) for path in Path(folder).glob("*/record.json"))
    best = standing_records((path, record) for path, record in readable if record is not None)

    def order(item):  # job number first ("10__x" after "9__x"), then the name
        name = item[0].parent.name
        head = name.split("__", 1)[0]
        return (int(head) if head.isdigit() else math.inf, name)

    return sorted(best, key=order)


def _columns(rows: list[dict]) -> list[str]:
    """The union of the rows' keys: identity, metrics and timings, device .. path, then ``cfg.*``."""
    tail = ("device", "git_commit", "error", "path")
    keys = list(dict.fromkeys(k for row in rows for k in row))
    group = lambda k: 0 if k in ROW_KEYS else 2 if k in tail else 3 if k.startswith("cfg.") else 1  # noqa: E731
    return sorted(keys, key=lambda k: (group(k), ROW_KEYS.index(k) if k in ROW_KEYS else 0))


def rebuild_runs_csv(folder: Path) -> tuple[Path, int]:
    """Rewrite ``folder/runs.csv`` from the records of :func:`current_records`, atomically and under
    the lock that parallel sweep jobs share. Returns (its path, its number of rows)."""
    folder = Path(folder)
    path = folder / "runs.csv"
    with open(folder / f".{path.name}.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        rows = [summary_row(record, run_file.parent) for run_file, record in current_records(folder)]
        fields = _columns(rows)
        if not rows:
            if not path.exists():
                return path, 0
            fields = list(ROW_KEYS)
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
        atomic_write_text(path, buf.getvalue())
    return path, len(rows)


def refresh_runs_csv(folder: Path) -> None:
    """:func:`rebuild_runs_csv`, warning instead of raising: ``runs.csv`` is a view, the records stay intact."""
    try:
        rebuild_runs_csv(folder)
    except OSError as error:
        if error.errno != errno.ENOENT:  # no sweep folder (yet): nothing to view
            print(f"forgetbench: warning: could not update {Path(folder) / 'runs.csv'} ({error}); "
                  f"`forgetbench-runs {folder}` rebuilds it from the records", file=sys.stderr, flush=True)


def flatten(d: dict, prefix: str = "") -> dict:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}``; lists become JSON strings."""
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, f"{key}."))
        elif isinstance(v, (list, tuple)):
            out[key] = json.dumps(_jsonable(v))
        else:
            out[key] = v
    return out


def git_commit(cwd: Path | None = None) -> str:
    cwd = cwd or Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True,
                                timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=cwd,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return commit + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def versions() -> dict:
    out = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    import torch

    out.update(torch=torch.__version__, cuda=torch.version.cuda)
    return out


def read_record(path: Path) -> dict | None:
    """A run record, or None when it is missing or unreadable (e.g. a run killed mid-write)."""
    try:
        record = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def reference_key(config: dict) -> str:
    """What a run and its joint-training reference for intransigence share: stream, scenario, model, seed."""
    return json.dumps([config.get("stream"), config.get("scenario"), config.get("model"), config.get("seed")],
                      sort_keys=True, default=str)


def joint_reference(results_dir: Path, record: dict) -> tuple[list[float], str] | None:
    """Final accuracies of a finished joint-training run with the same :func:`reference_key` (the
    reference for intransigence), and its path; None when there is none yet (the leaderboard fills
    it in later from the joint runs it reads)."""
    key = reference_key(record["config"])
    for path in sorted(Path(results_dir).glob("**/record.json")):
        other = read_record(path) or {}
        if other.get("strategy") == "joint" and other.get("status") == "ok" and reference_key(other["config"]) == key:
            return other["accuracy_matrix"][-1], str(path.parent)
    return None
