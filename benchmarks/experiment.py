"""One run: config -> stream, model, strategy -> protocol -> metrics -> run record and CSVs."""
from __future__ import annotations

import datetime as dt
import math
import random
import time
import traceback
import warnings
from pathlib import Path

import numpy as np
import torch
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from forgetbench.benchmarks import records, schema
from forgetbench.benchmarks.metrics import summarize
from forgetbench.benchmarks.streams import KINDS, SCENARIOS


class ConfigError(ValueError):
    """A config value is invalid; the message names the valid choices."""


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def resolve_device(name: str) -> torch.device:
    """``auto`` = CUDA when available, else CPU; ``cuda`` without CUDA is an error."""
    name = str(name)
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        device = None
    if device is None or device.type not in ("cpu", "cuda"):
        raise ConfigError(f"unknown device {name!r}; choose auto, cpu, cuda or cuda:N")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"device={name} but CUDA is not available here (torch {torch.__version__}); "
                              "use device=cpu or device=auto")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ConfigError(f"device={name} but only {torch.cuda.device_count()} CUDA device(s) exist")
    return device


def describe_device(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    return f"cpu ({torch.get_num_threads()} threads)" + ("" if torch.cuda.is_available() else ", CUDA not available")


def _build(node, **kwargs):
    """Instantiate a config node, leaving out its ``name`` field."""
    params = OmegaConf.to_container(node, resolve=True)
    params.pop("name", None)
    try:
        return instantiate(params, **kwargs)
    except InstantiationException as error:  # surface the target's own error (it names the fix)
        raise (error.__cause__ or error) from None


def validate(cfg: DictConfig):
    """Check the choices before any data is loaded; returns the strategy's registry entry."""
    from forgetbench.strategies.registry import get_strategy

    if cfg.scenario not in SCENARIOS:
        raise ConfigError(f"unknown scenario {cfg.scenario!r}; choose one of {list(SCENARIOS)}")
    if cfg.stream.kind not in KINDS:
        raise ConfigError(f"unknown stream kind {cfg.stream.kind!r}; choose one of {sorted(KINDS)}")
    try:
        info = get_strategy(cfg.strategy.name)
        info.check_scenario(cfg.scenario)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    schema.check(cfg, info)
    return info


def strategy_node(cfg: DictConfig) -> dict:
    """The strategy's config as plain values (``name``, its parameters, ``cls`` for the generic entry)."""
    return OmegaConf.to_container(cfg.strategy, resolve=True)


def strategy_record(info) -> dict:
    """What a run record keeps of the strategy that ran: its class and declared capabilities."""
    return {"class": f"{info.cls.__module__}.{info.cls.__qualname__}", "source": info.source,
            "scenarios": list(info.scenarios), "offline": info.offline, "upper_bound": info.upper_bound,
            "task_labels": info.task_labels, "stores": info.memory.describe() if info.memory else "not declared"}


def silent_evaluator():
    from avalanche.training.plugins import EvaluationPlugin

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return EvaluationPlugin(loggers=[])


def build_strategy(cfg: DictConfig, info, model, stream, device, plugins):
    """The strategy ``info`` stands for, with the config's parameters and the harness's arguments."""
    from forgetbench.benchmarks.fastdata import with_fast_data

    optimizer = _build(cfg.optimizer, _partial_=True)(model.parameters())
    strategy = with_fast_data(info.cls)(
        model=model,
        optimizer=optimizer,
        criterion=torch.nn.CrossEntropyLoss(),
        train_mb_size=cfg.batch_size,
        train_epochs=cfg.epochs,
        eval_mb_size=cfg.eval_batch_size,
        device=device,
        evaluator=silent_evaluator,
        plugins=plugins,
        **info.params(strategy_node(cfg)),
    )
    strategy.data_generator = torch.Generator().manual_seed(cfg.seed)
    return strategy


def compose(overrides=(), config_name: str = "config", return_hydra_config: bool = False) -> DictConfig:
    """The run config, composed as the ``forgetbench`` command would from ``key=value`` overrides
    (``return_hydra_config``: keep the ``hydra`` node, e.g. to inspect a launcher)."""
    from hydra import compose as hydra_compose, initialize_config_module

    from forgetbench.strategies.plugins import enable_plugin_configs

    enable_plugin_configs()
    with initialize_config_module(config_module="forgetbench.conf", version_base="1.3"):
        return hydra_compose(config_name, overrides=list(overrides), return_hydra_config=return_hydra_config)


def run(cfg: DictConfig, out_dir: str | Path | None = None) -> dict:
    """Run one experiment; write its record into ``out_dir`` and its row into ``../runs.csv``; return
    the record. ``out_dir`` defaults to ``<results_dir>/python/<date>_<time>__<run_name>``."""
    from forgetbench.benchmarks.protocol import MatrixRecorder, run_protocol

    if out_dir is None:
        out_dir = Path(cfg.results_dir) / "python" / f"{dt.datetime.now():%Y-%m-%d_%H-%M-%S}__{cfg.run_name}"
    out_dir = Path(out_dir)
    record = {
        "run_id": out_dir.name,
        "status": "running",
        "stream": cfg.stream.name,
        "scenario": cfg.scenario,
        "strategy": cfg.strategy.name,
        "model": cfg.model.name,
        "seed": int(cfg.seed),
        "device": None,
        "started_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "git_commit": records.git_commit(),
        "versions": records.versions(),
        "config": OmegaConf.to_container(cfg, resolve=True),
    }
    sink = None
    start = time.perf_counter()
    try:
        info = validate(cfg)
        record["strategy_info"] = strategy_record(info)
        device = resolve_device(cfg.device)
        if cfg.get("threads"):
            torch.set_num_threads(int(cfg.threads))
        seed_everything(cfg.seed)
        record["device"] = describe_device(device)
        print(f"forgetbench: {cfg.run_name} on {record['device']}", flush=True)
        sink = _wandb_sink(cfg, record, out_dir)
        stream = _build(cfg.stream).to(device)
        record["stream_info"] = stream.info
        model = _build(cfg.model, input_shape=stream.input_shape, num_outputs=stream.num_outputs,
                       num_heads=stream.num_heads)
        recorder = MatrixRecorder(stream.num_experiences, progress=cfg.progress,
                                  on_train_loss=sink.log_train_loss if sink else None)
        strategy = build_strategy(cfg, info, model, stream, device, [recorder])
        record["memory"] = info.memory and info.memory.usage(
            info.params(strategy_node(cfg)), train_samples=[len(ids) for ids in stream.train_ids],
            input_numel=math.prod(stream.input_shape), num_outputs=stream.num_outputs,
            model_parameters=sum(p.numel() for p in model.parameters()))
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*deprecated.*")
            result = run_protocol(strategy, stream.benchmark(), recorder, offline=info.offline,
                                  on_row=(lambda i, acc, loss: sink.log_row(i, acc)) if sink else None,
                                  train_kwargs={"reset_optimizer_state": bool(cfg.reset_optimizer)})
    except BaseException as error:  # record every failure (config errors and Ctrl-C included), then re-raise
        record.update(status="failed", error=f"{type(error).__name__}: {error}",
                      traceback=traceback.format_exc(), total_seconds=time.perf_counter() - start)
        _write(out_dir, record)
        if sink:
            sink.fail(record["error"])
        raise
    reference = records.joint_reference(cfg.results_dir, record)
    record.update(
        status="ok",
        accuracy_matrix=result.accuracy,
        loss_matrix=result.loss,
        metrics=summarize(result.accuracy, reference[0] if reference else None),
        intransigence_reference=reference[1] if reference else None,
        timings={
            "train_seconds": sum(result.train_seconds),
            "eval_seconds": sum(result.eval_seconds),
            "total_seconds": time.perf_counter() - start,
            "train_seconds_per_call": result.train_seconds,
            "eval_seconds_per_row": result.eval_seconds,
        },
        finished_at=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    )
    _write(out_dir, record)  # the CSVs first: W&B can never cost them
    if sink:
        sink.finish(record)
    print(format_summary(record), flush=True)
    return record


def _wandb_sink(cfg: DictConfig, record: dict, out_dir: Path):
    """A :class:`WandbSink` when ``logger=wandb``, else None."""
    settings = cfg.logger.get("wandb") if "logger" in cfg else None
    if not settings:
        return None
    from forgetbench.benchmarks.wandb_sink import WandbSink

    out_dir.mkdir(parents=True, exist_ok=True)
    return WandbSink(
        project=settings.project, entity=settings.entity, mode=settings.mode, tags=list(settings.tags),
        name=f"{record['stream']}__{record['scenario']}__{record['strategy']}__{record['seed']}",
        group=out_dir.parent.name, job_type=record["strategy"], config=record["config"], dir=str(out_dir),
    )


def _write(out_dir: Path, record: dict) -> None:
    """record.json and the matrix CSVs in the run dir, then the summary row in ../runs.csv."""
    if record["status"] == "ok":
        acc, loss = np.asarray(record["accuracy_matrix"]), np.asarray(record["loss_matrix"])
        records.atomic_write_text(out_dir / "accuracy_matrix.csv", records.matrix_csv(acc))
        records.atomic_write_text(out_dir / "accuracy.csv", records.long_csv(record["run_id"], acc, loss))
    records.write_json(out_dir / "record.json", record)
    row = {k: record.get(k) for k in ("run_id", "status", "stream", "scenario", "strategy", "model", "seed")}
    metrics = {k: v for k, v in record.get("metrics", {}).items() if not isinstance(v, list)}
    timings = {k: v for k, v in record.get("timings", {}).items() if not isinstance(v, list)}
    row.update({**metrics, **timings, "device": record["device"], "git_commit": record["git_commit"],
                "error": record.get("error", ""), "path": str(out_dir)})
    row.update(records.flatten(record["config"], "cfg."))
    records.append_csv_row(out_dir.parent / "runs.csv", row)


def format_summary(record: dict) -> str:
    import pandas as pd

    acc = np.asarray(record["accuracy_matrix"], dtype=float)
    T = acc.shape[1]
    table = pd.DataFrame(acc, index=["init"] + [f"after e{i}" for i in range(T)],
                         columns=[f"e{j}" for j in range(T)])
    m, t = record["metrics"], record["timings"]
    fmt = lambda v: "n/a" if v is None or (isinstance(v, float) and np.isnan(v)) else f"{v:+.4f}"  # noqa: E731
    return (
        f"\naccuracy matrix (row: trained up to; column: test experience)\n"
        f"{table.to_string(float_format=lambda v: f'{v:.3f}', na_rep='-')}\n\n"
        f"ACC {m['acc']:.4f}  BWT {fmt(m['bwt'])}  FWT {fmt(m['fwt'])}  "
        f"forgetting {fmt(m['forgetting'])}  learning acc {fmt(m['learning_acc'])}\n"
        f"time: train {t['train_seconds']:.1f}s, eval {t['eval_seconds']:.1f}s, total {t['total_seconds']:.1f}s\n"
    )
