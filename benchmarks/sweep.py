"""Sweeps: resume by resolved config, claims that share the work between sweeps, "[run k/N]"
progress, and the sweep's outcome (what failed, the exit code).

A run of a sweep is *done* when some ``record.json`` in the sweep directory has status ``ok``
and the same resolved config, ignoring the keys in :data:`VOLATILE` (where output goes, how
it is shown, how many threads compute it). Directory names are not compared: job numbers
shift when a grid grows, and a run's identity is its config.

A run is *claimed* before it is computed (:func:`claim`): a file ``.claims/<hash of the config>.json``
in the sweep directory, created with ``O_CREAT|O_EXCL``, naming the owner (host, pid, start time).
Two sweeps into one directory (or two launchers numbering their jobs differently) thus compute
each config once: the second skips a run a live process holds. A claim whose owner is dead (same
host, pid gone) or whose heartbeat stopped :data:`CLAIM_STALE_SECONDS` ago (other hosts) is stale
and taken over. The claim is removed when the run ends, however it ends.
"""
from __future__ import annotations

import contextlib
import copy
import datetime as dt
import hashlib
import json
import os
import shlex
import socket
import sys
import threading
import time
import uuid
from pathlib import Path

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from forgetbench.benchmarks.records import atomic_write_text, read_record, refresh_runs_csv

# Dotted config keys that do not change what a run computes.
VOLATILE = ("hydra", "progress", "force", "allow_refused", "threads", "results_dir", "sweep_name", "run_name",
            "data.root", "data.download", "stream.root", "stream.download")
SWEEP_SIZE_ENV = "FORGETBENCH_SWEEP_SIZE"
COMMAND_ENV = "FORGETBENCH_COMMAND"  # the forgetbench command line, set by the CLI, read into the records
OUTCOMES_ENV = "FORGETBENCH_SWEEP_OUTCOMES"  # folder where each job of this sweep reports its outcome
CLAIMS = ".claims"
COMMANDS_LOG = "commands.log"
CLAIM_HEARTBEAT_SECONDS = 60.0  # the owner touches its claim this often ...
CLAIM_STALE_SECONDS = 900.0  # ... and a claim untouched this long is stale (owner killed, host gone)
FAILED = ("failed", "interrupted", "unsaved")  # outcomes that make a sweep exit non-zero


def identity(config: dict) -> dict:
    """The config as computed (``per_strategy`` folded into ``strategy``), without its :data:`VOLATILE` keys."""
    from forgetbench.benchmarks.schema import fold_per_strategy

    config = copy.deepcopy(fold_per_strategy(config))
    for dotted in VOLATILE:
        *parents, leaf = dotted.split(".")
        node = config
        for key in parents:
            node = node.get(key) if isinstance(node, dict) else None
        if isinstance(node, dict):
            node.pop(leaf, None)
    return config


def config_key(config: dict) -> str:
    """A string equal for two resolved configs exactly when their :func:`identity` is equal."""
    return json.dumps(identity(config), sort_keys=True, default=str)


def _key(cfg: DictConfig | dict) -> str:
    return config_key(cfg if isinstance(cfg, dict) else OmegaConf.to_container(cfg, resolve=True))


def config_hash(cfg: DictConfig | dict, length: int = 8) -> str:
    """A short hex digest of :func:`config_key`: the same for two runs exactly when they compute the same."""
    return hashlib.sha256(_key(cfg).encode()).hexdigest()[:length]


def run_config_hash(*, _root_: DictConfig) -> str:
    """Resolver ``${config_hash:}`` for run directory names: :func:`config_hash` of the run's config
    (the root without Hydra's node), so a different config never lands in the same directory."""
    run_cfg = OmegaConf.masked_copy(_root_, [k for k in _root_ if k != "hydra"])
    return config_hash(run_cfg)


def find_finished(cfg: DictConfig | dict, sweep_dir: Path) -> Path | None:
    """The run directory under ``sweep_dir`` holding a finished run of this config, if any."""
    key = _key(cfg)
    for path in sorted(Path(sweep_dir).glob("*/record.json")):
        record = read_record(path)
        if record and record.get("status") == "ok" and config_key(record.get("config") or {}) == key:
            return path.parent
    return None


# ---------------------------------------------------------------- claims

class Held(Exception):
    """The run is claimed by another live process; ``owner`` is what its claim file says."""

    def __init__(self, owner: dict | None, path: Path):
        self.owner, self.path = owner or {}, path
        o = self.owner
        who = (f"pid {o.get('pid')} on {o.get('host')} since {o.get('started_at')}" if o
               else "a process that is writing its claim")
        super().__init__(f"being run by {who} (claim {path})")


class Claim:
    """A claim this process holds; a context manager that releases it. While held, a thread touches
    the file every :data:`CLAIM_HEARTBEAT_SECONDS` so that other hosts see the owner is alive."""

    def __init__(self, path: Path, owner: dict, took_over: dict | None = None):
        self.path, self.owner, self.took_over = path, owner, took_over
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name="forgetbench-claim", daemon=True)
        self._thread.start()

    def _beat(self) -> None:
        while not self._stop.wait(CLAIM_HEARTBEAT_SECONDS):
            with contextlib.suppress(OSError):
                os.utime(self.path)

    def release(self) -> None:
        """Remove the claim file, if it is still this claim's."""
        self._stop.set()
        owner, _ = _read_claim(self.path)
        if owner and owner.get("token") == self.owner["token"]:
            with contextlib.suppress(OSError):
                os.unlink(self.path)

    def __enter__(self) -> "Claim":
        return self

    def __exit__(self, *exc) -> None:
        self.release()


class Unclaimed:
    """Stands in for a :class:`Claim` that could not be made (the run goes on without one)."""

    took_over = None

    def release(self) -> None:
        pass

    def __enter__(self) -> "Unclaimed":
        return self

    def __exit__(self, *exc) -> None:
        pass


def claim_path(sweep_dir: Path, cfg: DictConfig | dict) -> Path:
    return Path(sweep_dir) / CLAIMS / f"{config_hash(cfg, 24)}.json"


def _read_claim(path: Path) -> tuple[dict | None, float | None]:
    """(the claim's content, or None while it is being written; seconds since it was last touched),
    or (None, None) when there is no claim file."""
    try:
        age = time.time() - path.stat().st_mtime
        text = path.read_text()
    except FileNotFoundError:
        return None, None
    return _parse_claim(text), age


def _parse_claim(text: str) -> dict | None:
    try:
        owner = json.loads(text)
    except ValueError:
        return None
    return owner if isinstance(owner, dict) else None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, owned by someone else
        return True
    except OSError:
        return True
    return True


def is_stale(owner: dict | None, age: float) -> bool:
    """A claim is stale when untouched for :data:`CLAIM_STALE_SECONDS`, or when its owner ran on this
    host and its pid is gone (or is this very process: a claim left over from an earlier run)."""
    if age > CLAIM_STALE_SECONDS:
        return True
    if not owner or owner.get("host") != socket.gethostname():
        return False
    pid = owner.get("pid")
    return not isinstance(pid, int) or pid == os.getpid() or not _alive(pid)


def _remove_stale(path: Path, seen: str) -> bool:
    """Take the stale claim ``path`` (whose text was ``seen``) out of the way; False when it changed
    meanwhile (another process took it over first)."""
    aside = path.with_name(f"{path.name}.stale-{uuid.uuid4().hex}")
    try:
        os.rename(path, aside)
    except FileNotFoundError:
        return False
    try:
        if aside.read_text() == seen:
            return True
        with contextlib.suppress(OSError):  # not the one judged stale: put it back (unless replaced again)
            os.link(aside, path)
        return False
    finally:
        with contextlib.suppress(OSError):
            os.unlink(aside)


def claim(cfg: DictConfig | dict, sweep_dir: Path, run_dir: Path | None = None) -> Claim:
    """Claim the run of ``cfg`` in ``sweep_dir`` for this process, taking over a stale claim
    (``Claim.took_over`` = its content); raises :class:`Held` when a live process holds it."""
    path = claim_path(sweep_dir, cfg)
    path.parent.mkdir(parents=True, exist_ok=True)
    owner = {"host": socket.gethostname(), "pid": os.getpid(),
             "started_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
             "run_dir": str(run_dir) if run_dir else None, "token": uuid.uuid4().hex}
    took_over = None
    for _ in range(10):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            try:
                age = time.time() - path.stat().st_mtime
                seen = path.read_text()
            except FileNotFoundError:
                continue  # released meanwhile: try again
            current = _parse_claim(seen)
            if not is_stale(current, age):
                raise Held(current, path) from None
            if _remove_stale(path, seen):
                took_over = current or {}
            continue
        try:
            with os.fdopen(fd, "w") as f:
                f.write(json.dumps(owner) + "\n")
                f.flush()
                os.fsync(f.fileno())
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(path)
            raise
        return Claim(path, owner, took_over)
    raise Held(_read_claim(path)[0], path)


# ---------------------------------------------------------------- sweep size, outcomes, exit code

def sweep_size(hydra_cfg: DictConfig) -> int | None:
    """Number of runs Hydra's basic sweeper makes of this multirun config (None for other sweepers)."""
    if not str(hydra_cfg.sweeper.get("_target_", "")).endswith("BasicSweeper"):
        return None
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper

    params = [f"{k}={v}" for k, v in (hydra_cfg.sweeper.get("params") or {}).items()]
    overrides = OverridesParser.create().parse_overrides(params + list(hydra_cfg.overrides.task))
    return len(BasicSweeper.split_arguments(overrides, None)[0])


def report(job_num: int, status: str, record: Path | str | None = None, detail: str = "") -> None:
    """A job tells the sweep how it ended: ok, skipped, held, failed, interrupted or unsaved (and the
    record that says so). Best effort: a job that cannot report counts as not finished."""
    folder = os.environ.get(OUTCOMES_ENV)
    if not folder:
        return
    with contextlib.suppress(OSError):
        atomic_write_text(Path(folder) / f"{job_num}.json",
                          json.dumps({"job": job_num, "status": status, "record": str(record) if record else None,
                                      "detail": detail}))


_exit_code = 0
_active: dict = {}  # the sweep this process launched: sweep_dir, outcomes


def active_sweep_dir() -> Path | None:
    """The sweep directory of the sweep this process launched (None: not launching one)."""
    return _active.get("sweep_dir")


def abandon() -> None:
    """After an interrupted sweep: remove the jobs' outcome folder (the records stay)."""
    folder = _active.get("outcomes")
    if folder is not None:
        with contextlib.suppress(OSError):
            for path in folder.glob("*"):
                path.unlink()
            folder.rmdir()
            folder.parent.rmdir()


def exit_code() -> int:
    """What the command exits with after a sweep: 1 when a run failed, was interrupted, could not be
    saved in the sweep directory, or did not report its outcome; else 0."""
    return _exit_code


def summarize(outcomes: list[dict], expected: int | None) -> tuple[int, list[str]]:
    """(exit code, lines to print) for a sweep's outcomes."""
    counts: dict[str, int] = {}
    for outcome in outcomes:
        counts[outcome["status"]] = counts.get(outcome["status"], 0) + 1
    missing = max(0, (expected or 0) - len(outcomes))
    total = expected if expected is not None else len(outcomes)
    parts = [f"{n} {status}" for status, n in sorted(counts.items())] + ([f"{missing} unknown"] if missing else [])
    lines = [f"forgetbench: sweep of {total} run(s): {', '.join(parts) or 'nothing ran'}"]
    bad = [o for o in outcomes if o["status"] in FAILED]
    for outcome in sorted(bad, key=lambda o: o["job"]):
        lines.append(f"  {outcome['status']}: {outcome['record'] or '(no record)'}")
    if missing:
        lines.append(f"  {missing} run(s) reported no outcome (killed, or their sweep directory is not writable)")
    held = [o for o in outcomes if o["status"] == "held"]
    for outcome in held:
        lines.append(f"  left to another sweep: {outcome['detail']}")
    return (1 if bad or missing else 0), lines


def log_command(sweep_dir: Path) -> None:
    """Append the command launching this sweep to ``<sweep dir>/commands.log`` (Hydra's
    ``multirun.yaml`` keeps only the last one): every command that wrote into a sweep stays listed."""
    command = os.environ.get(COMMAND_ENV) or shlex.join(["forgetbench", *sys.argv[1:]])
    try:
        sweep_dir.mkdir(parents=True, exist_ok=True)
        with open(sweep_dir / COMMANDS_LOG, "a") as log:
            log.write(f"{dt.datetime.now().astimezone().isoformat(timespec='seconds')}\t{command}\n")
    except OSError as error:
        print(f"forgetbench: warning: could not log the command in {sweep_dir / COMMANDS_LOG} ({error})",
              file=sys.stderr, flush=True)


class SweepCallback(Callback):
    """The sweep's bookkeeping, in the launching process. At the start: the sweep's size into the
    environment (the jobs, also joblib's workers, inherit it) for "[run k/N]", a folder for the
    jobs' outcomes, and ``runs.csv`` regenerated from the records (a resumed sweep starts from a
    true view). At the end: ``runs.csv`` again, one line per failed run, and the exit code."""

    def on_multirun_start(self, config: DictConfig, **kwargs) -> None:
        global _exit_code
        _exit_code = 0
        size = sweep_size(config.hydra)
        self.size = size
        if size is not None:
            os.environ[SWEEP_SIZE_ENV] = str(size)
        self.sweep_dir = Path(config.hydra.sweep.dir)
        log_command(self.sweep_dir)
        self.outcomes = self.sweep_dir / ".outcomes" / f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
        os.environ[OUTCOMES_ENV] = str(self.outcomes.resolve())
        _active.update(sweep_dir=self.sweep_dir, outcomes=self.outcomes)
        if self.sweep_dir.is_dir():
            refresh_runs_csv(self.sweep_dir)

    def on_multirun_end(self, config: DictConfig, **kwargs) -> None:
        global _exit_code
        outcomes = []
        for path in sorted(self.outcomes.glob("*.json")):
            outcome = read_record(path)
            if outcome and "status" in outcome:
                outcomes.append(outcome)
        if self.sweep_dir.is_dir():
            refresh_runs_csv(self.sweep_dir)
        _exit_code, lines = summarize(outcomes, self.size)
        print(lines[0], flush=True)
        for line in lines[1:]:
            print(line, file=sys.stderr if _exit_code else sys.stdout, flush=True)
        abandon()  # the outcomes are read: remove their folder (and .outcomes/ when no other sweep reports there)
        _active.clear()


def run_label(job_num: int) -> str:
    """``[run k/N]`` (``[run k]`` when the sweep size is unknown), k counted from 1."""
    size = os.environ.get(SWEEP_SIZE_ENV)
    return f"[run {job_num + 1}/{size}]" if size else f"[run {job_num + 1}]"
