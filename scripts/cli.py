"""``forgetbench``: run one experiment, or a sweep with ``-m`` (Hydra multirun).

    forgetbench stream=split_mnist strategy=ewc
    forgetbench -m strategy=naive,ewc,replay seed=0,1,2
    forgetbench -m launcher=joblib strategy=naive,ewc seed=0,1,2 sweep_name=grid   # again: resumes
    forgetbench --cfg job stream=permuted_mnist

In a sweep, a run that already finished (same resolved config, status ok) is skipped unless
``force=true``, a run that another live sweep is computing is left to it, and a run that fails
is recorded as failed without stopping the others.

Exit codes: 0 all runs ok (or skipped); 1 a run failed, or a finished run's record could not be
written where it belongs (then it says where it went), or a program error (with its traceback);
2 a user error (a bad config value, missing or corrupt data, no CUDA, out of GPU memory, a
diverged run): one message naming the fix, no traceback (``FORGETBENCH_DEBUG=1`` or
``HYDRA_FULL_ERROR=1`` shows it); 130 Ctrl-C, after the run in progress is recorded as interrupted.
"""
import os
import shlex
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from forgetbench.strategies.plugins import enable_plugin_configs

enable_plugin_configs()  # strategy plugins' conf/ folders join Hydra's search path

EXIT_FAILED, EXIT_USER_ERROR, EXIT_INTERRUPTED = 1, 2, 130
_in_sweep = False
DEBUG_ENVS = ("FORGETBENCH_DEBUG", "HYDRA_FULL_ERROR")


def debugging() -> bool:
    return any(os.environ.get(name, "") not in ("", "0") for name in DEBUG_ENVS)


def user_error(error: BaseException, cfg: DictConfig) -> str | None:
    """The message for an error a person fixes in the command line or the setup (None: a program error)."""
    import torch

    from forgetbench.benchmarks import data, protocol
    from forgetbench.benchmarks.experiment import ConfigError

    if isinstance(error, torch.cuda.OutOfMemoryError):
        first = str(error).strip().splitlines()[0] if str(error).strip() else "CUDA out of memory"
        model = cfg.model.get("name") if "model" in cfg else "?"
        return (f"out of GPU memory ({first}). Reduce batch_size (now {cfg.get('batch_size')}) or "
                f"eval_batch_size (now {cfg.get('eval_batch_size')}), or use a smaller model than model={model}.")
    # their messages name the fix: a config value, the data root or files, a lower learning rate
    known = (ConfigError, data.DataNotFoundError, getattr(data, "DataIntegrityError", ConfigError),
             getattr(protocol, "DivergenceError", ConfigError))
    if isinstance(error, known):
        return str(error)
    return None


def _record_of(error: BaseException, out_dir: Path) -> Path:
    return Path(getattr(error, "record_path", None) or out_dir / "record.json")


@hydra.main(version_base="1.3", config_path="pkg://forgetbench.conf", config_name="config")
def hydra_main(cfg: DictConfig) -> None:
    hydra_cfg = HydraConfig.get()
    out_dir = Path(hydra_cfg.runtime.output_dir)
    if hydra_cfg.mode == RunMode.MULTIRUN:
        sweep_job(cfg, hydra_cfg.job.num, out_dir)
    else:
        single_run(cfg, out_dir)


def single_run(cfg: DictConfig, out_dir: Path) -> None:
    from forgetbench.benchmarks.experiment import run
    from forgetbench.benchmarks.records import RecordNotSaved

    try:
        run(cfg, out_dir)
    except RecordNotSaved as error:
        print(f"forgetbench: {error}", file=sys.stderr, flush=True)
        sys.exit(EXIT_FAILED)
    except Exception as error:
        message = user_error(error, cfg)
        if message is None or debugging():
            raise  # a program error: Hydra prints its traceback, exit code 1
        print(f"forgetbench: error: {message}\n  (recorded as failed in {_record_of(error, out_dir)}; "
              "FORGETBENCH_DEBUG=1 shows the traceback)", file=sys.stderr, flush=True)
        sys.exit(EXIT_USER_ERROR)


def sweep_job(cfg: DictConfig, job_num: int, out_dir: Path) -> None:
    """One run of a sweep: skip it when finished or held by another live sweep, else claim it, run
    it, report how it ended (see :func:`benchmarks.sweep.report`) and release the claim."""
    global _in_sweep
    from forgetbench.benchmarks import sweep
    from forgetbench.benchmarks.experiment import run
    from forgetbench.benchmarks.records import RecordNotSaved

    _in_sweep = True
    label = f"{sweep.run_label(job_num)} {cfg.run_name}"
    sweep_dir = out_dir.parent

    def skip_if_finished() -> bool:
        done = None if cfg.force else sweep.find_finished(cfg, sweep_dir)
        if done is not None:
            print(f"{label}: skipped, already finished in {done} (force=true re-runs it)", flush=True)
            sweep.report(job_num, "skipped", done / "record.json")
        return done is not None

    if skip_if_finished():
        return
    try:
        claim = sweep.claim(cfg, sweep_dir, out_dir)
    except sweep.Held as held:
        print(f"{label}: skipped, {held}", flush=True)
        sweep.report(job_num, "held", None, str(held))
        return
    except OSError as error:  # no claim file (e.g. a full disk): compute it anyway, its result matters more
        print(f"{label}: warning: could not claim the run ({error}); running it unclaimed", file=sys.stderr,
              flush=True)
        claim = sweep.Unclaimed()
    with claim:
        if claim.took_over is not None:
            o = claim.took_over
            print(f"{label}: taking over from a stale claim (pid {o.get('pid')} on {o.get('host')}, "
                  f"since {o.get('started_at')})", flush=True)
        if skip_if_finished():  # finished while we were claiming?
            return
        print(label, flush=True)
        try:
            run(cfg, out_dir)
        except RecordNotSaved as error:
            print(f"{label}: {error}", file=sys.stderr, flush=True)
            sweep.report(job_num, "unsaved", error.saved_to / "record.json" if error.saved_to else None, str(error))
        except KeyboardInterrupt as error:
            sweep.report(job_num, "interrupted", _record_of(error, out_dir))
            raise
        except Exception as error:  # one failed run must not stop the sweep; run() recorded it
            record = _record_of(error, out_dir)
            message = user_error(error, cfg) or f"{type(error).__name__}: {error}"
            print(f"{label}: FAILED with {message}\n  see {record}", file=sys.stderr, flush=True)
            sweep.report(job_num, "failed", record, message)
        else:
            sweep.report(job_num, "ok", out_dir / "record.json")


def _interrupted_line(error: KeyboardInterrupt) -> str:
    from forgetbench.benchmarks import sweep
    from forgetbench.benchmarks.records import read_record

    path = getattr(error, "record_path", None)
    sweep_dir = sweep.active_sweep_dir()
    sweep.abandon()
    if path is None and sweep_dir is not None:  # e.g. joblib: the runs were in other processes
        return (f"forgetbench: interrupted (Ctrl-C); the sweep in {sweep_dir} stopped (a run in progress says status: "
                "interrupted, or has no record if its worker was killed); run the same command again to resume it")
    if path is None:
        return "forgetbench: interrupted (Ctrl-C) before a run started; nothing recorded"
    status = (read_record(path) or {}).get("status", "missing")
    again = "; run the same command again to resume the sweep" if _in_sweep else ""
    return f"forgetbench: interrupted (Ctrl-C); {path} says status: {status}{again}"


def check_command_line(argv: list[str]) -> None:
    """Refuse ``key=value`` of an unknown key now, naming the nearest key (Hydra would only suggest ``+key``)."""
    from hydra._internal.utils import get_args_parser

    from forgetbench.benchmarks.experiment import ConfigError
    from forgetbench.benchmarks.schema import check_overrides

    args, extra = get_args_parser().parse_known_args(argv)
    if args.shell_completion or args.help or args.hydra_help or args.info:
        return
    try:
        check_overrides([*args.overrides, *extra])
    except ConfigError as error:
        print(f"forgetbench: error: {error}", file=sys.stderr, flush=True)
        sys.exit(EXIT_USER_ERROR)


def main() -> None:
    """The ``forgetbench`` command: Hydra's main, then the exit code (see the module docstring)."""
    check_command_line(sys.argv[1:])
    from forgetbench.benchmarks.sweep import COMMAND_ENV

    os.environ[COMMAND_ENV] = shlex.join(["forgetbench", *sys.argv[1:]])  # for the records (experiment.commands)
    try:
        hydra_main()
    except KeyboardInterrupt as error:
        if debugging():
            raise
        print(_interrupted_line(error), file=sys.stderr, flush=True)
        sys.exit(EXIT_INTERRUPTED)
    from forgetbench.benchmarks import sweep

    if sweep.exit_code():
        sys.exit(sweep.exit_code())


if __name__ == "__main__":
    main()
