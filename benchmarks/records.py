"""Run records and the CSV sink: written atomically, appended under a lock.

A run directory holds ``record.json`` (everything about the run), ``accuracy_matrix.csv``
(wide: one row per training stage) and ``accuracy.csv`` (long: one row per matrix cell).
The sweep directory above it holds ``runs.csv``, one summary row per run.
"""
from __future__ import annotations

import csv
import fcntl
import io
import json
import math
import os
import platform
import subprocess
import tempfile
from importlib import metadata
from pathlib import Path

import numpy as np

PACKAGES = ("torch", "torchvision", "avalanche-lib", "hydra-core", "pandas", "wandb", "numpy")


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` via a temp file in the same folder and a rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give the file the usual permissions
    try:
        with os.fdopen(fd, "w", newline="") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


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


def append_csv_row(path: Path, row: dict) -> None:
    """Append ``row`` to a CSV under an exclusive lock (parallel sweep jobs share the file).

    A row with columns the file lacks rewrites the file with the union of columns.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(f".{path.name}.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        rows, fields = [], []
        if path.exists() and path.stat().st_size:
            with open(path, newline="") as f:
                reader = csv.DictReader(f)
                fields, rows = list(reader.fieldnames or []), list(reader)
        new = [k for k in row if k not in fields]
        if new or not fields:
            fields = fields + new
            buf = io.StringIO()
            writer = csv.DictWriter(buf, fieldnames=fields)
            writer.writeheader()
            writer.writerows(rows + [row])
            atomic_write_text(path, buf.getvalue())
        else:
            with open(path, "a", newline="") as f:
                csv.DictWriter(f, fieldnames=fields).writerow(row)


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
