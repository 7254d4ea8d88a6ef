"""The W&B sink: one W&B run per forgetbench run, which can never cost a result.

wandb is used directly rather than through Avalanche's WandBLogger, which logs Avalanche's
metric stream (not the accuracy matrix), calls ``wandb.init`` itself and lets a wandb error
crash training. Here every call is guarded: if wandb fails to import, to init or to log, the
sink warns once, switches itself off, and the run (and its CSVs) go on.

Logged: the training loss (``train/loss`` against ``train/step``); after each experience the
accuracy on every experience seen so far (``acc/e{j}``) and the running metrics
(``running/*``) against ``experience``, so W&B draws forgetting curves; at the end the
accuracy matrix as a ``wandb.Table`` and a heatmap, and the metrics in the run summary.
"""
from __future__ import annotations

import functools
import warnings

import numpy as np

from forgetbench.benchmarks.metrics import summarize
from forgetbench.benchmarks.plots import heatmap


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


class WandbSink:
    def __init__(self, *, project: str, name: str, group: str, job_type: str, config: dict, dir: str,
                 entity: str | None = None, mode: str | None = None, tags=()):
        self.run = None
        self._rows: dict[int, np.ndarray] = {}  # finished matrix rows, for the running metrics
        try:
            import wandb

            self.wandb = wandb
            self.run = wandb.init(project=project, entity=entity, name=name, group=group, job_type=job_type,
                                  config=config, dir=dir, mode=mode, tags=list(tags), reinit="finish_previous",
                                  settings=wandb.Settings(init_timeout=300))  # a busy machine starts slowly
            self.run.define_metric("train/step")
            self.run.define_metric("train/*", step_metric="train/step")
            self.run.define_metric("experience")
            for prefix in ("acc", "loss", "running"):
                self.run.define_metric(f"{prefix}/*", step_metric="experience")
        except Exception as error:  # noqa: BLE001
            self.run = None
            self._disable(f"init failed: {type(error).__name__}: {error}")

    def _disable(self, why: str) -> None:
        warnings.warn(f"W&B logging is off for this run ({why}); the CSV results are unaffected.", stacklevel=3)
        run, self.run = self.run, None
        if run is not None:
            try:
                run.finish(exit_code=1)
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
        self.run.finish(exit_code=0)
        self.run = None

    @_guarded
    def fail(self, error: str) -> None:
        self.run.summary["error"] = error
        self.run.finish(exit_code=1)
        self.run = None

