"""The W&B sink: one W&B run per forgetbench run, which can never cost a result.

wandb is used directly rather than through Avalanche's WandBLogger, which logs Avalanche's
metric stream (not the accuracy matrix), calls ``wandb.init`` itself and lets a wandb error
crash training. Here every call is guarded: if wandb fails to import, to init or to log, the
sink warns once, switches itself off, and the run (and its CSVs, written before the sink
finishes) go on.

Online, ``wandb.init`` may wait :data:`ONLINE_INIT_TIMEOUT` seconds for the server (``$WANDB_INIT_TIMEOUT``
overrides it), not wandb's 90 s (or the 300 s a sweep used to pay per run with no network). When an
online init fails, the run is logged offline instead, and so is every later run of the process: one
warning says so, and ``wandb sync`` uploads the offline runs later.

``finish`` and ``fail`` return once the run's files are complete: ``run.finish()`` returns when the
service has the exit record, but wandb-core writes the end of the ``.wandb`` file only when it closes
the run's stream, after ``run.finish()`` has returned; ``wandb.teardown()`` waits for the service
process to close every stream and exit (the next run starts a new one).

Logged: the training loss (``train/loss`` against ``train/step``); after each experience the
accuracy on every experience seen so far (``acc/e{j}``) and the running metrics
(``running/*``) against ``experience``, so W&B draws forgetting curves; at the end the
accuracy matrix as a ``wandb.Table`` and a heatmap, and the metrics in the run summary.
"""
from __future__ import annotations

import functools
import os
import secrets
import shutil
import string
import warnings
from pathlib import Path

import numpy as np

from forgetbench.benchmarks.metrics import summarize
from forgetbench.benchmarks.plots import heatmap

ONLINE_INIT_TIMEOUT = 30.0  # seconds wandb.init may wait for the W&B server
OFFLINE_INIT_TIMEOUT = 300.0  # offline there is no server, only a service process that a busy machine starts slowly
OFFLINE_MODES = ("offline", "dryrun", "disabled")

# Why this process logs offline (the first online init that failed), or None while it has not failed.
offline_since: str | None = None


def _guarded(method):
    @functools.wraps(method)
    def call(self, *args, **kwargs):
        if self.run is None:
            return None
        try:
            return method(self, *args, **kwargs)
        except Exception as error:  # noqa: BLE001 - W&B must never stop a run
            self._disable(f"{method.__name__} failed: {type(error).__name__}: {error}")
            return None
    return call


def _run_id() -> str:
    """A W&B run id (8 lowercase letters and digits) from the OS, not from ``random``, which every
    run with the same seed has in the same state."""
    return "".join(secrets.choice(string.ascii_lowercase + string.digits) for _ in range(8))


class WandbSink:
    def __init__(self, *, project: str, name: str, group: str, job_type: str, config: dict, dir: str,
                 entity: str | None = None, mode: str | None = None, tags=(), init_timeout: float | None = None):
        global offline_since
        self.run = None
        self.wandb = None
        self._rows: dict[int, np.ndarray] = {}  # finished matrix rows, for the running metrics
        try:
            import wandb

            self.wandb = wandb
            requested = mode or os.environ.get("WANDB_MODE") or "online"
            online = requested not in OFFLINE_MODES
            if online and offline_since is not None:
                mode, online = "offline", False  # the server was out of reach once: don't wait for it again
            if init_timeout is None:
                init_timeout = float(os.environ.get("WANDB_INIT_TIMEOUT", ONLINE_INIT_TIMEOUT))
            kwargs = dict(project=project, entity=entity, name=name, group=group, job_type=job_type, config=config,
                          dir=dir, tags=list(tags), reinit="finish_previous",
                          id=os.environ.get("WANDB_RUN_ID") or _run_id())
            try:
                self.run = wandb.init(**kwargs, mode=mode, settings=wandb.Settings(
                    init_timeout=init_timeout if online else max(init_timeout, OFFLINE_INIT_TIMEOUT)))
            except Exception as error:  # noqa: BLE001
                if not online:
                    raise
                offline_since = f"{type(error).__name__}: {_first_line(error)}"
                _drop_attempt(wandb, Path(dir), kwargs["id"])
                warnings.warn(f"W&B: wandb.init online failed ({offline_since}); this run and the rest of this process "
                              f"log offline; upload them later with `wandb sync <run dir>/wandb/offline-run-*`. "
                              f"The CSV results are unaffected.", stacklevel=2)
                self.run = wandb.init(**kwargs, mode="offline",
                                      settings=wandb.Settings(init_timeout=max(init_timeout, OFFLINE_INIT_TIMEOUT)))
            self.run.define_metric("train/step")
            self.run.define_metric("train/*", step_metric="train/step")
            self.run.define_metric("experience")
            for prefix in ("acc", "loss", "running"):
                self.run.define_metric(f"{prefix}/*", step_metric="experience")
        except Exception as error:  # noqa: BLE001
            self._disable(f"init failed: {type(error).__name__}: {_first_line(error)}")

    def _disable(self, why: str) -> None:
        warnings.warn(f"W&B logging is off for this run ({why}); the CSV results are unaffected.", stacklevel=3)
        self._close(exit_code=1)

    def _close(self, exit_code: int) -> None:
        """Finish the run (if any) and wait until its files are written; never raises."""
        run, self.run = self.run, None
        if run is None:
            return
        for close in (lambda: run.finish(exit_code=exit_code),
                      self.wandb.teardown):  # returns once wandb-core has closed the run's files and exited
            try:
                close()
            except Exception:  # noqa: BLE001
                pass

    @_guarded
    def log_train_loss(self, step: int, loss: float) -> None:
        self.run.log({"train/step": step, "train/loss": loss})

    @_guarded
    def log_row(self, row: int, accuracy: np.ndarray) -> None:
        """Row ``row`` of the matrix is done: log the experiences seen so far and running metrics."""
        if row == 0:
            return
        self._rows[row] = np.array(accuracy)
        data = {"experience": row}
        data.update({f"acc/e{j}": float(accuracy[j]) for j in range(row)})
        if all(r in self._rows for r in range(1, row + 1)):
            partial = np.vstack([np.zeros(row)] + [self._rows[r][:row] for r in range(1, row + 1)])
            running = summarize(partial)  # row 0 unused by ACC, BWT and forgetting
            data.update({f"running/{k}": running[k] for k in ("acc", "bwt", "forgetting")})
        self.run.log(data)

    @_guarded
    def finish(self, record: dict) -> None:
        """Log the matrix and the summary, close the run (exit code 0) and wait until its files are complete."""
        acc = np.asarray(record["accuracy_matrix"], dtype=float)
        T = acc.shape[1]
        rows = [["init" if i == 0 else f"e{i - 1}"] + [None if np.isnan(v) else float(v) for v in r]
                for i, r in enumerate(acc)]
        self.run.log({"accuracy_matrix": self.wandb.Table(columns=["after"] + [f"e{j}" for j in range(T)], data=rows),
                      "accuracy_heatmap": self.wandb.Image(heatmap(acc, record["run_id"]))})
        for key, value in record["metrics"].items():
            self.run.summary[key] = value
        for key, value in record["timings"].items():
            if not isinstance(value, list):
                self.run.summary[key] = value
        self._close(exit_code=0)

    @_guarded
    def fail(self, error: str) -> None:
        """Record ``error`` in the summary, close the run (exit code 1) and wait until its files are complete."""
        self.run.summary["error"] = error
        self._close(exit_code=1)


def _first_line(error: Exception) -> str:
    lines = str(error).strip().splitlines()
    return lines[0] if lines else ""


def _drop_attempt(wandb, directory: Path, run_id: str) -> None:
    """Forget a failed online init: stop the service, which still holds its run id (it exits within
    seconds, with or without a network), and remove what it wrote (``wandb/run-*-<id>``: a run without
    data), so that the offline run can take the id and ``wandb sync`` finds only that one."""
    try:
        wandb.teardown()
    except Exception:  # noqa: BLE001
        pass
    for path in directory.glob(f"wandb/run-*-{run_id}"):
        shutil.rmtree(path, ignore_errors=True)
