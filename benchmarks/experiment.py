"""One run: config -> stream, model, strategy -> protocol -> metrics -> run record and CSVs."""
from __future__ import annotations

import contextlib
import datetime as dt
import math
import os
import random
import shlex
import sys
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
from forgetbench.benchmarks.metrics import average_accuracy, summarize
from forgetbench.benchmarks.streams import KINDS, SCENARIOS
from forgetbench.benchmarks.sweep import COMMAND_ENV


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

    from forgetbench.benchmarks.training import ActiveClasses, IterationBudget, SeenClassesLoss

    optimizer = _build(cfg.optimizer, _partial_=True)(model.parameters())
    criterion, epochs = torch.nn.CrossEntropyLoss(), cfg.epochs
    if cfg.get("iterations"):  # the same number of steps per experience for every strategy (offline: T x)
        epochs = cfg.iterations * (stream.num_experiences if info.offline else 1)
        plugins = [*plugins, IterationBudget(epochs)]  # as many epochs as steps: the budget, not epochs, ends it
    if cfg.get("active_classes") == "seen":
        criterion = SeenClassesLoss(stream.num_outputs)
        plugins = [*plugins, ActiveClasses(criterion)]
    strategy = with_fast_data(info.cls)(
        model=model,
        optimizer=optimizer,
        criterion=criterion,
        train_mb_size=cfg.batch_size,
        train_epochs=epochs,
        eval_mb_size=cfg.eval_batch_size,
        device=device,
        evaluator=silent_evaluator,
        plugins=plugins,
        **info.params(strategy_node(cfg)),
    )
    strategy.data_generator = torch.Generator().manual_seed(cfg.seed)
    return strategy


def sleep_timings(strategy) -> dict:
    """``sleep_seconds`` (total and per experience) for a strategy with sleep phases; nothing otherwise.
    Wake time is ``train_seconds - sleep_seconds``."""
    from forgetbench.strategies.sleep import sleep_seconds

    per_experience = sleep_seconds(strategy)
    if per_experience is None:
        return {}
    return {"sleep_seconds": sum(per_experience), "sleep_seconds_per_experience": per_experience}


def compose(overrides=(), config_name: str = "config", return_hydra_config: bool = False) -> DictConfig:
    """The run config, composed as the ``forgetbench`` command would from ``key=value`` overrides
    (``return_hydra_config``: keep the ``hydra`` node, e.g. to inspect a launcher)."""
    from hydra import compose as hydra_compose, initialize_config_module

    from forgetbench.strategies.plugins import enable_plugin_configs

    enable_plugin_configs()
    with initialize_config_module(config_module="forgetbench.conf", version_base="1.3"):
        return hydra_compose(config_name, overrides=list(overrides), return_hydra_config=return_hydra_config)


def run(cfg: DictConfig, out_dir: str | Path | None = None) -> dict:
    """Run one experiment; write its record into ``out_dir``, rebuild ``../runs.csv``; return the
    record. ``out_dir`` defaults to ``<results_dir>/python/<date>_<time>__<run_name>``.

    Every run that starts leaves a record: ``ok``; ``failed`` (error and traceback) when it raises;
    ``interrupted`` on Ctrl-C. The error is re-raised after the record is written, carrying the
    record's path as ``error.record_path``. A finished run prints its summary first, then writes its
    files; when its run dir can't take them (disk full, permissions) they go to a fallback folder
    (:func:`records.save_run`) and :class:`records.RecordNotSaved` is raised, naming it."""
    knobs = cfg.get(schema.PER_STRATEGY)
    if knobs is not None:  # the run's own strategy's entries join ``strategy``: what it computes and records
        cfg = OmegaConf.create(schema.fold_per_strategy(OmegaConf.to_container(cfg, resolve=True)))
        knobs = OmegaConf.to_container(knobs, resolve=True)
    if out_dir is None:
        out_dir = Path(cfg.results_dir) / "python" / f"{dt.datetime.now():%Y-%m-%d_%H-%M-%S}__{cfg.run_name}"
    out_dir = Path(out_dir)
    command, sweep_command = commands()
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
        "git_commit": None,
        "versions": None,
        "config": OmegaConf.to_container(cfg, resolve=True),
        "command": command,  # this run alone; None from Python
        "sweep_command": sweep_command,  # the whole sweep's command line; None for a single run
    }
    sink = None
    start = time.perf_counter()
    bars_before = _progress_bars()
    try:  # from here on, whatever happens (Ctrl-C during start-up included) is recorded
        from forgetbench.benchmarks.protocol import MatrixRecorder, run_protocol

        record["git_commit"] = records.git_commit()
        record["versions"] = records.versions()
        problems = schema.per_strategy_problems(knobs)
        if problems:
            raise ConfigError("\n".join(problems))
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
        record["eval_split"] = stream.eval_split  # what the accuracy matrix is computed on: "validation" or "test"
        model = _build(cfg.model, input_shape=stream.input_shape, num_outputs=stream.num_outputs,
                       num_heads=stream.num_heads)
        recorder = MatrixRecorder(stream.num_experiences, progress=cfg.progress,
                                  on_train_loss=sink.log_train_loss if sink else None,
                                  task_masked=cfg.scenario == "class")  # task-IL read off the class-IL run
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
        record.update(  # the matrix joins the record at once: a failure after this point keeps it
            accuracy_matrix=result.accuracy,
            loss_matrix=result.loss,
            **({} if result.task_masked_accuracy is None  # class-IL only
               else {"task_masked_accuracy_matrix": result.task_masked_accuracy}),
            timings={
                "train_seconds": sum(result.train_seconds),
                "eval_seconds": sum(result.eval_seconds),
                "total_seconds": time.perf_counter() - start,
                "train_seconds_per_call": result.train_seconds,
                "eval_seconds_per_row": result.eval_seconds,
                **sleep_timings(strategy),
            },
        )
        reference = records.joint_reference(cfg.results_dir, record)
        record.update(
            metrics={**summarize(result.accuracy, reference[0] if reference else None),
                     "task_masked_acc": math.nan if result.task_masked_accuracy is None
                     else average_accuracy(result.task_masked_accuracy)},
            intransigence_reference=reference[1] if reference else None,
            finished_at=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            status="ok",
        )
    except BaseException as error:  # record every failure (config errors and Ctrl-C included), then re-raise
        for bar in _progress_bars() - bars_before:  # clear the bar this run leaves: the next message starts a line
            with contextlib.suppress(Exception):
                bar.close()
        record.update(status="interrupted" if isinstance(error, KeyboardInterrupt) else "failed",
                      error=f"{type(error).__name__}: {error}", traceback=traceback.format_exc(),
                      total_seconds=time.perf_counter() - start)
        where, problem = _write(out_dir, record)
        if where != out_dir:
            print(f"forgetbench: could not write {out_dir / 'record.json'} ({problem}); the {record['status']} "
                  f"run's record is in {where or 'stderr (above)'}", file=sys.stderr, flush=True)
        _tag(error, (where or out_dir) / "record.json")
        if sink:
            with contextlib.suppress(Exception):
                sink.fail(record["error"])
        raise
    where = None
    try:
        try:
            print(format_summary(record), flush=True)  # first: whatever happens to the disk, the matrix is shown
        finally:
            where, problem = _write(out_dir, record)  # the CSVs before W&B: W&B can never cost them
        if sink:
            sink.finish(record)
    except BaseException as error:  # e.g. Ctrl-C during the write (finished first) or a closed stdout
        _tag(error, (where or out_dir) / "record.json")
        raise
    if where != out_dir:
        raise records.RecordNotSaved(record, out_dir, where, problem)
    return record


def commands() -> tuple[str | None, str | None]:
    """(the command that reproduces this run alone, the sweep's command line) when run by the
    ``forgetbench`` command (None, None from Python). The sweep's is what ``forgetbench`` was called
    with (:data:`COMMAND_ENV`, inherited by launcher workers)."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if not HydraConfig.initialized():
        return None, None
    hydra_cfg = HydraConfig.get()
    job = shlex.join(["forgetbench", *hydra_cfg.overrides.task])
    if hydra_cfg.mode == RunMode.MULTIRUN:
        return job, os.environ.get(COMMAND_ENV)
    return os.environ.get(COMMAND_ENV, job), None


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


def _write(out_dir: Path, record: dict) -> tuple[Path | None, OSError | None]:
    """The matrix CSVs and record.json in the run dir (or a fallback folder, see
    :func:`records.save_run`), then ../runs.csv rebuilt from the records beside it. Ctrl-C waits
    until this is done. Never raises OSError; returns (where the record is, what kept it out of
    ``out_dir``)."""
    where = problem = None
    try:
        with records.interrupts_deferred():
            where, problem = records.save_run(out_dir, record)
            if where == out_dir:
                records.refresh_runs_csv(out_dir.parent)
    except KeyboardInterrupt as interrupt:  # Ctrl-C during the write: raised now that the write is done
        _tag(interrupt, (where or out_dir) / "record.json")
        raise
    return where, problem


def _progress_bars() -> set:
    """The open tqdm progress bars."""
    with contextlib.suppress(Exception):
        from tqdm import tqdm

        return set(getattr(tqdm, "_instances", ()))
    return set()


def _tag(error: BaseException, record_path: Path) -> None:
    """Attach the path of the record that describes ``error`` (first tag wins)."""
    if getattr(error, "record_path", None) is None:
        with contextlib.suppress(AttributeError, TypeError):
            error.record_path = record_path


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
        f"time: train {t['train_seconds']:.1f}s"
        + (f" (wake {t['train_seconds'] - t['sleep_seconds']:.1f}s, sleep {t['sleep_seconds']:.1f}s)"
           if "sleep_seconds" in t else "")
        + f", eval {t['eval_seconds']:.1f}s, total {t['total_seconds']:.1f}s\n"
    )
